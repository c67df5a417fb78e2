"""Baselines with known answers and the protocols' window construction."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from services.realtime.model.data import BinnedSeries, load_uci_bins
from services.realtime.model.evaluation import (
    DAY_AHEAD_15MIN,
    HOURLY_ONE_STEP,
    baseline_forecasts,
    fit_linear,
    linear_forecast,
    persistence,
    protocol_windows,
    score,
    seasonal_naive,
    swanson_mean,
)
from services.realtime.model.training import windows_of

LOCAL = dt.timezone(dt.timedelta(hours=1))  # the UCI file's clock
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def synthetic_series(
    start: dt.datetime, end: dt.datetime, resolution_s: int, gaps: list[tuple[int, int]] = ()
) -> BinnedSeries:
    """A daily sine on a regular grid, with missing bins ``[a, b)`` for each gap."""
    step = resolution_s * 1_000_000
    first = (start - EPOCH) // dt.timedelta(microseconds=1)
    last = (end - EPOCH) // dt.timedelta(microseconds=1)
    starts = np.arange(first, last, step, dtype=np.int64)
    phase = 2 * np.pi * (starts / 1e6 % 86_400) / 86_400
    values = np.ones((len(starts), 7))
    values[:, 0] = 1.5 + np.sin(phase)
    for a, b in gaps:
        values[a:b] = np.nan
    return BinnedSeries(starts, values, resolution_s)


# --- metrics and baselines ---------------------------------------------------------------


def test_score_gives_rmse_and_mae() -> None:
    metrics = score(np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]]))
    assert metrics.rmse == pytest.approx(np.sqrt(2.5))
    assert metrics.mae == pytest.approx(1.5)
    assert metrics.n == 2
    with pytest.raises(ValueError, match="complete"):
        score(np.array([np.nan]), np.array([0.0]))


def test_persistence_repeats_the_last_input_value() -> None:
    values = np.arange(20.0)
    np.testing.assert_array_equal(persistence(values, np.array([5, 10]), 3), [[4] * 3, [9] * 3])


def test_seasonal_naive_is_exact_on_a_periodic_series() -> None:
    series = synthetic_series(
        dt.datetime(2009, 1, 1, tzinfo=LOCAL), dt.datetime(2009, 1, 6, tzinfo=LOCAL), 900
    )
    y = series.target
    origins = np.array([96, 200, 300])
    forecast = seasonal_naive(y, origins, 96, 96)
    actual = y[origins[:, None] + np.arange(96)]
    assert score(forecast, actual).rmse < 1e-9
    # and it never looks at or past the origin, even for a horizon beyond one season
    long = seasonal_naive(np.arange(1000.0), np.array([500]), 5, 2)
    assert long.max() < 500
    np.testing.assert_array_equal(long, [[498, 499, 498, 499, 498]])


def test_linear_regression_recovers_an_exactly_linear_series() -> None:
    # a sine obeys y[t] = 2 cos(w) y[t-1] - y[t-2]: every step ahead is linear in the lags
    series = synthetic_series(
        dt.datetime(2009, 1, 1, tzinfo=LOCAL), dt.datetime(2009, 1, 11, tzinfo=LOCAL), 900
    )
    features = series.features()
    train = np.arange(8, 500)
    test = np.arange(600, 900)
    weights = fit_linear(features, series.target, train, 8, 4, ridge=1e-12)
    forecast = linear_forecast(features, test, weights, 8)
    assert score(forecast, series.target[test[:, None] + np.arange(4)]).rmse < 1e-6


def test_swanson_mean_weights_the_three_quantiles() -> None:
    q = np.array([[[1.0, 2.0, 6.0]]])
    assert swanson_mean(q, (0.1, 0.5, 0.9))[0, 0] == pytest.approx(0.3 + 0.8 + 1.8)
    with pytest.raises(ValueError, match="Swanson"):
        swanson_mean(q, (0.05, 0.5, 0.95))


def test_baselines_share_the_test_windows() -> None:
    series = synthetic_series(
        dt.datetime(2009, 1, 1, tzinfo=LOCAL), dt.datetime(2009, 1, 21, tzinfo=LOCAL), 900
    )
    features = series.features()
    forecasts = baseline_forecasts(
        series,
        features,
        np.arange(400, 1200),
        np.array([1500, 1600]),
        input_steps=384,
        horizon_steps=96,
        season_steps=96,
    )
    assert set(forecasts) == {"persistence", "seasonal_naive", "linear_regression"}
    assert all(f.shape == (2, 96) for f in forecasts.values())


# --- protocol windows ----------------------------------------------------------------


def test_day_ahead_windows_are_local_midnights_of_the_last_year_without_leakage() -> None:
    start = dt.datetime(2008, 1, 1, tzinfo=LOCAL)
    end = dt.datetime(2009, 7, 1, 12, tzinfo=LOCAL)
    probe = synthetic_series(start, end, 900)
    # a 3-hour outage on 2009-03-10 (longer than the 2-hour interpolation limit) and a
    # single missing bin at 23:45 on 2009-05-01 (short: interpolated in inputs, but it is
    # the last input of the 2009-05-02 forecast, which would leak the next target)
    outage = probe.index_of(dt.datetime(2009, 3, 10, 8, tzinfo=LOCAL))
    last_bin = probe.index_of(dt.datetime(2009, 5, 1, 23, 45, tzinfo=LOCAL))
    series = synthetic_series(
        start, end, 900, gaps=[(outage, outage + 12), (last_bin, last_bin + 1)]
    )
    windows = protocol_windows(series, DAY_AHEAD_15MIN)

    first_test_day = dt.datetime(2008, 7, 2, tzinfo=LOCAL)  # first midnight of the last 365 days
    assert windows.train_stop == series.index_of(first_test_day)
    origins = windows.test_origins
    local_s = series.starts_us[origins] // 1_000_000 + 3600
    assert (local_s % 86_400 == 0).all()
    assert origins.min() == windows.train_stop
    # 2008-07-02 .. 2009-06-30 is 364 forecast days (2009-07-01 is incomplete); the
    # outage costs its own day (targets) and the next four (inputs); the late bin costs
    # its own day (a missing target) and the next (a missing last input)
    assert len(origins) == 364 - 5 - 2
    days = {
        dt.datetime.fromtimestamp(series.starts_us[o] / 1e6, LOCAL).date() for o in origins.tolist()
    }
    for missing in ["2009-03-10", "2009-03-11", "2009-03-14", "2009-05-01", "2009-05-02"]:
        assert dt.date.fromisoformat(missing) not in days
    assert dt.date.fromisoformat("2009-03-15") in days

    # no test target is an input of its own window, and inputs end right before it
    index = np.arange(len(series), dtype=np.float64)[:, None]
    inputs = windows_of(index, origins, DAY_AHEAD_15MIN.input_steps)[..., 0]
    assert (inputs.max(axis=1) == origins - 1).all()


def test_hourly_windows_cover_2010_only() -> None:
    series = synthetic_series(
        dt.datetime(2009, 10, 1, tzinfo=LOCAL),
        dt.datetime(2010, 2, 1, tzinfo=LOCAL),
        3600,
    )
    windows = protocol_windows(series, HOURLY_ONE_STEP)
    assert windows.train_stop == series.index_of(dt.datetime(2010, 1, 1, tzinfo=LOCAL))
    np.testing.assert_array_equal(windows.test_origins, np.arange(windows.train_stop, len(series)))
    assert len(windows.test_origins) == 31 * 24


def test_protocol_windows_need_the_protocol_resolution() -> None:
    series = synthetic_series(
        dt.datetime(2010, 1, 1, tzinfo=LOCAL), dt.datetime(2010, 1, 2, tzinfo=LOCAL), 900
    )
    with pytest.raises(ValueError, match="3600"):
        protocol_windows(series, HOURLY_ONE_STEP)


@pytest.mark.slow
def test_protocol_windows_on_the_full_file(full_uci) -> None:
    day_ahead = protocol_windows(load_uci_bins(full_uci, 900), DAY_AHEAD_15MIN)
    hourly = protocol_windows(load_uci_bins(full_uci, 3600), HOURLY_ONE_STEP)
    # 365 test midnights (2009-11-27 .. 2010-11-25 complete days) less the outages
    assert len(day_ahead.test_origins) == 333
    assert len(hourly.test_origins) == 6952
