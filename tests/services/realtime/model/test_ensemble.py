"""The day-ahead ensemble: profile, regression, MLP, weights, and the protocol run with it."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest

from services.realtime.model.data import BinnedSeries, load_uci_bins
from services.realtime.model.ensemble import (
    PER_STEP,
    MlpConfig,
    best_weights,
    calibrated_interval,
    combine,
    fit_mlp,
    fit_profile_regression,
    fit_profile_regressions,
    interval_scale,
    profile_regressors,
    seasonal_profile,
)
from services.realtime.model.evaluation import (
    DAY_AHEAD_15MIN,
    ProtocolWindows,
    PublishedProtocol,
    _near_times,
    evaluate_protocol,
    score,
)
from shared.holidays import french_public_holidays
from tests.conftest import APRIL_2007
from tests.services.realtime.model.conftest import TINY

HOUR_US = 3_600_000_000
#: Hourly bins, local clock = UTC (utc_offset_s=0); 2007-01-01 was a Monday.
MONDAY = int(dt.datetime(2007, 1, 1, tzinfo=dt.UTC).timestamp()) * 1_000_000
SHAPE = {"input_steps": 48, "horizon_steps": 24, "resolution_s": 3600, "utc_offset_s": 0}


def weekly(days: int, noise: float = 0.0, seed: int = 0) -> BinnedSeries:
    """Hourly load: a daily shape whose height depends on the day of the week, times a
    level that drifts slowly; the other six channels are constant."""
    starts = MONDAY + np.arange(days * 24, dtype=np.int64) * HOUR_US
    hours = np.arange(len(starts))
    dow = (hours // 24) % 7
    shape = 1 + np.sin(2 * np.pi * (hours % 24) / 24) * (1 + 0.1 * dow)
    level = 1 + 0.3 * np.sin(2 * np.pi * hours / (24 * 90))
    values = np.ones((len(starts), 7))
    values[:, 0] = shape * level + noise * np.random.default_rng(seed).normal(size=len(starts))
    return BinnedSeries(starts, values, 3600)


def test_seasonal_profile_learns_the_weekly_shape_from_rows_before_stop_only() -> None:
    series = weekly(28)
    y = series.target.copy()
    y[5] = np.nan  # a missing bin is ignored
    stop = 14 * 24
    profile = seasonal_profile(
        y, series.starts_us, stop, resolution_s=3600, utc_offset_s=0, smooth=0
    )
    assert profile.shape == (7, 24)
    # Monday 06:00 and Sunday 06:00 differ (the shape depends on the day)
    assert profile[6, 6] > profile[0, 6]
    y[stop:] = 1e6  # whatever comes at or after stop never enters the profile
    again = seasonal_profile(y, series.starts_us, stop, resolution_s=3600, utc_offset_s=0, smooth=0)
    np.testing.assert_array_equal(profile, again)
    with pytest.raises(ValueError, match="no measured target"):
        seasonal_profile(
            np.full(10, np.nan), series.starts_us[:10], 10, resolution_s=3600, utc_offset_s=0
        )


def test_profile_regressors_never_read_a_target_at_or_after_the_origin() -> None:
    series = weekly(21)
    features = series.features()
    profile = seasonal_profile(
        series.target, series.starts_us, 200, resolution_s=3600, utc_offset_s=0
    )
    origins = np.array([100, 240, 300])
    common, per_step = profile_regressors(features, series.starts_us, origins, profile, **SHAPE)
    assert common.shape[0] == 3
    assert per_step.shape == (3, 24, PER_STEP)
    spoiled = features.copy()
    for o in origins:
        spoiled[o:, :7] = -99.0
        again = profile_regressors(spoiled, series.starts_us, np.array([o]), profile, **SHAPE)
        np.testing.assert_array_equal(again[0][0], common[origins.tolist().index(o)])
        spoiled = features.copy()
    with pytest.raises(ValueError, match="whole days"):
        profile_regressors(
            features, series.starts_us, origins, profile, **{**SHAPE, "input_steps": 30}
        )


def test_profile_regression_is_near_exact_on_a_weekly_habit_and_beats_the_day_before() -> None:
    series = weekly(120)
    features = series.features()
    stop = 90 * 24
    train = np.arange(48, stop - 24 + 1)
    test = np.arange(stop + 48, len(series) - 24, 24)
    model = fit_profile_regression(
        features, series.target, series.starts_us, train, stop=stop, **SHAPE
    )
    actual = series.target[test[:, None] + np.arange(24)]
    ours = score(model.predict(features, series.starts_us, test), actual)
    day_before = score(series.target[test[:, None] + np.arange(24) - 24], actual)
    assert ours.rmse < 0.1  # of a load of about 1
    assert ours.rmse < day_before.rmse / 2
    with pytest.raises(ValueError, match="at or after stop"):
        fit_profile_regression(
            features, series.target, series.starts_us, np.array([stop]), stop=stop, **SHAPE
        )


def test_fit_profile_regressions_shares_one_pass_and_pooling_shrinks_the_step_weights() -> None:
    series = weekly(60, noise=0.3, seed=5)
    features = series.features()
    stop = 45 * 24
    train = np.arange(48, stop - 24 + 1, 3)
    args = (features, series.target, series.starts_us, train)
    grid = ((1e-2, 0), (1e-2, 4), (1.0, 0))
    fits = fit_profile_regressions(*args, stop=stop, shrinkage=grid, **SHAPE)
    assert set(fits) == set(grid)
    # each setting is exactly the single fit with that ridge and pool
    for (ridge, pool), fit in fits.items():
        alone = fit_profile_regression(*args, stop=stop, ridge=ridge, pool=pool, **SHAPE)
        np.testing.assert_allclose(fit.weights, alone.weights)
        np.testing.assert_allclose(fit.scales, alone.scales)

    # neighbouring steps share their fit: the weights vary less from step to step
    def roughness(w: np.ndarray) -> float:
        return float(np.abs(np.diff(w, axis=0)).mean())

    assert roughness(fits[(1e-2, 4)].weights) < roughness(fits[(1e-2, 0)].weights) / 2
    # a larger ridge shrinks the weights
    assert np.abs(fits[(1.0, 0)].weights).sum() < np.abs(fits[(1e-2, 0)].weights).sum()


def test_fit_mlp_is_seeded_and_learns() -> None:
    series = weekly(60, noise=0.05)
    features = series.features()
    stop = 45 * 24
    train = np.arange(48, stop - 24 + 1)
    test = np.arange(stop + 48, len(series) - 24, 24)
    regression = fit_profile_regression(
        features, series.target, series.starts_us, train, stop=stop, **SHAPE
    )
    small = MlpConfig(units=16, epochs=3, batch_size=128, learning_rate=3e-3, seeds=(3,))
    args = (regression, features, series.target, series.starts_us, train)
    first, epochs = fit_mlp(*args, config=small, val=train[-100:])
    second, _ = fit_mlp(*args, config=small, val=train[-100:])
    np.testing.assert_array_equal(first(test), second(test))
    assert 1 <= epochs <= small.epochs
    actual = series.target[test[:, None] + np.arange(24)]
    flat = np.full_like(actual, series.target[:stop].mean())
    assert score(first(test), actual).rmse < score(flat, actual).rmse


def test_best_weights_finds_the_blend_and_combine_applies_it() -> None:
    actual = np.linspace(0, 1, 50)[None, :]
    members = {"a": actual + 0.2, "b": actual - 0.2, "c": 1 - actual}
    weights = best_weights(members, actual)
    assert weights == {"a": 0.5, "b": 0.5, "c": 0.0}
    assert sum(weights.values()) == pytest.approx(1)
    np.testing.assert_allclose(combine(members, weights), actual)


def test_interval_scale_widens_a_too_narrow_interval_to_its_nominal_share() -> None:
    rng = np.random.default_rng(1)
    actual = rng.normal(size=(200, 50))
    point = np.zeros_like(actual)
    # the 10/90 % quantiles of N(0, 1) are -/+1.2816; these are half as wide, off-centre
    quantiles = np.stack([point - 0.6408 + 0.3, point + 0.3, point + 0.6408 + 0.3], axis=-1)
    scale = interval_scale(quantiles, point, actual, 0.8)
    assert scale == pytest.approx(2.0, abs=0.1)
    widened = calibrated_interval(quantiles, point, scale)
    np.testing.assert_allclose(widened[..., 1], point)
    held = np.mean((actual >= widened[..., 0]) & (actual <= widened[..., -1]))
    assert held == pytest.approx(0.8, abs=0.02)


def _april_protocol() -> PublishedProtocol:
    """A small day-ahead protocol on the April 2007 slice: one day in, one day out, the
    last week tested at local midnights."""

    def windows(series: BinnedSeries, features: np.ndarray) -> ProtocolWindows:
        local = series.starts_us // 1_000_000 + 3600
        midnights = np.flatnonzero(local % 86_400 == 0)
        first = int(midnights[-8])
        return ProtocolWindows(first, series.usable_origins(features, 96, 96, midnights[-8:]))

    return dataclasses.replace(
        DAY_AHEAD_15MIN,
        name="april_day_ahead",
        input_steps=96,
        windows=windows,
        model=dataclasses.replace(
            TINY, input_steps=96, horizon_steps=96, patch=4, epochs=1, origin_stride=8
        ),
        ensemble=MlpConfig(units=16, epochs=1, seeds=(5,)),
    )


def test_evaluate_protocol_with_the_ensemble_scores_every_member_on_the_same_windows() -> None:
    series = load_uci_bins(APRIL_2007, 900)
    result = evaluate_protocol(series, _april_protocol())
    assert result.point == "ensemble"
    assert set(result.members) == {"profile_regression", "mlp", "lstm", "lstm_median"}
    assert set(result.weights) == {"profile_regression", "mlp", "lstm"}
    assert sum(result.weights.values()) == pytest.approx(1)
    assert set(result.validation) == {"profile_regression", "mlp", "lstm", "ensemble"}
    assert result.validation_windows > 0
    # the ensemble's validation error is at most its best member's (the grid holds each alone)
    best_member = min(m.rmse for k, m in result.validation.items() if k != "ensemble")
    assert result.validation["ensemble"].rmse <= best_member + 1e-12
    n = result.test_windows * 96
    assert result.model.n == n
    assert all(m.n == n for m in result.members.values())
    assert 0 <= result.coverage <= 1
    # the LSTM's median is still reported, and the baselines are on the same windows
    assert result.members["lstm_median"].rmse > 0
    assert all(m.n == n for m in result.baselines.values())


def test_profile_regression_learns_that_a_public_holiday_looks_like_a_sunday() -> None:
    series = weekly(150)
    hours = np.arange(len(series))
    dow = (hours // 24) % 7
    # a steady weekly habit (no drift); every other Wednesday is a holiday lived like a Sunday
    wednesdays = [d for d in range(150) if d % 7 == 2][::2]
    dow[np.isin(hours // 24, wednesdays)] = 6
    values = series.values.copy()
    values[:, 0] = 1 + np.sin(2 * np.pi * (hours % 24) / 24) * (1 + 0.1 * dow)
    series = BinnedSeries(series.starts_us, values, 3600)
    features = series.features()
    holidays = {dt.date(2007, 1, 1) + dt.timedelta(days=d) for d in wednesdays}
    stop = 120 * 24
    train = np.arange(48, stop - 24 + 1)
    test = np.array([d * 24 for d in wednesdays if d * 24 >= stop + 48])
    assert len(test) >= 1
    actual = series.target[test[:, None] + np.arange(24)]
    args = (features, series.target, series.starts_us, train)
    told = fit_profile_regression(*args, stop=stop, holidays=holidays, **SHAPE)
    blind = fit_profile_regression(*args, stop=stop, **SHAPE)
    on_holidays = score(told.predict(features, series.starts_us, test), actual).rmse
    assert on_holidays < 0.75 * score(blind.predict(features, series.starts_us, test), actual).rmse


def test_near_times_keeps_origins_within_the_span_around_midnight() -> None:
    near = _near_times(np.array([0]), 96, 8)
    origins = np.array([0, 8, 9, 88, 87, 96 + 4, 48])
    assert near(origins).tolist() == [True, True, False, True, False, True, False]


def test_french_public_holidays_has_the_eleven_days_with_easter_moving_ones() -> None:
    days = french_public_holidays(2010)
    assert len(days) == 11
    assert {dt.date(2010, 4, 5), dt.date(2010, 5, 13), dt.date(2010, 5, 24)} <= days
    assert dt.date(2010, 7, 14) in days
    assert dt.date(2010, 12, 26) not in days
