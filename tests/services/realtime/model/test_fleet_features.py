"""The fleet model's inputs: normalisation, same-slot statistics, cold start, holidays."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from services.realtime.model.fleet_features import (
    DAY_BINS,
    INPUT_BINS,
    MIN_LEVEL_KW,
    england_bank_holidays,
    feature_count,
    fleet_features,
    nan_median_days,
)

MIDNIGHT_S = 1_383_264_000  # 2013-11-01 00:00 UTC, a Friday


def _epoch_day(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days


def _profile(level: float) -> np.ndarray:
    day = np.r_[np.full(16, 0.5), np.full(32, 1.5)] * level
    return np.tile(day, 7)


def test_fleet_features_scale_free_for_households_of_different_level():
    small, large = _profile(0.1), _profile(3.0)

    inputs = fleet_features(np.stack([small, large]), np.array([MIDNIGHT_S, MIDNIGHT_S]))

    assert inputs.x.shape == (2, feature_count())
    assert inputs.level == pytest.approx([0.1 * 7 / 6, 3.0 * 7 / 6])
    # everything but the log level is identical after normalising by the own level
    log_level = INPUT_BINS + 7 * DAY_BINS + 3
    same = np.delete(inputs.x, log_level, axis=1)
    np.testing.assert_allclose(same[0], same[1], rtol=1e-5)
    np.testing.assert_allclose(inputs.base[0] * inputs.level[0], small[:DAY_BINS], rtol=1e-6)


def test_fleet_features_cold_start_needs_one_day_of_known_bins():
    history = np.full((3, INPUT_BINS), np.nan)
    history[0, -DAY_BINS:] = 0.4  # exactly the first complete day
    history[1, -(DAY_BINS - 1) :] = 0.4  # one bin short
    # row 2: nothing at all

    inputs = fleet_features(history, np.full(3, MIDNIGHT_S))

    assert inputs.ok.tolist() == [True, False, False]
    assert np.isfinite(inputs.x).all()  # missing bins are imputed, never NaN
    np.testing.assert_allclose(inputs.base[0], 1.0)  # the only day, normalised
    assert inputs.level[2] == MIN_LEVEL_KW


def test_fleet_features_rejects_a_window_of_the_wrong_length():
    with pytest.raises(ValueError, match="336"):
        fleet_features(np.zeros((1, 48)), np.array([MIDNIGHT_S]))


def test_fleet_features_marks_a_bank_holiday_tomorrow():
    christmas_eve = MIDNIGHT_S + 53 * 86_400  # 2013-12-24
    holidays = england_bank_holidays([2013])
    width = feature_count()

    inputs = fleet_features(_profile(1.0)[None], np.array([christmas_eve]), holidays)

    assert inputs.x[0, width - 2 :].tolist() == [0.0, 1.0]  # today no, tomorrow yes


def test_nan_median_days_matches_numpy():
    rng = np.random.default_rng(1)
    days = rng.gamma(1.0, size=(50, 7, DAY_BINS))
    days[rng.random(days.shape) < 0.3] = np.nan
    days[0, :, 0] = np.nan

    ours = nan_median_days(days)

    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmedian(days, axis=1)
    np.testing.assert_allclose(ours, expected)


@pytest.mark.parametrize(
    "day",
    [
        dt.date(2013, 3, 29),  # Good Friday
        dt.date(2013, 4, 1),  # Easter Monday
        dt.date(2013, 5, 6),
        dt.date(2013, 12, 26),
        dt.date(2021, 12, 28),  # Boxing Day substitute (26th a Sunday)
        dt.date(2022, 9, 19),  # one-off
    ],
)
def test_england_bank_holidays_by_rule(day: dt.date):
    assert _epoch_day(day) in england_bank_holidays([day.year])


def test_england_bank_holidays_not_ordinary_days():
    found = england_bank_holidays([2013])

    assert len(found) == 8
    assert _epoch_day(dt.date(2013, 4, 5)) not in found
