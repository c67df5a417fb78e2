"""Anomaly score: distance outside the previous forecast's interval, in interval widths."""

from __future__ import annotations

import numpy as np
import pytest

from services.realtime.core.anomaly import interval_score, score_steps

BIN_US = 900 * 1_000_000


def test_interval_score_is_zero_inside_and_on_the_bounds():
    assert interval_score([0.5, 1.0, 1.5], [0.5] * 3, [1.5] * 3).tolist() == [0.0, 0.0, 0.0]


def test_interval_score_counts_interval_widths_outside():
    # interval 1 kW wide: 2 kW above the top is 2 widths, 0.25 kW below is 0.25
    scores = interval_score([3.5, 0.25], [0.5, 0.5], [1.5, 1.5])
    assert scores.tolist() == [2.0, 0.25]


def test_interval_score_narrow_interval_uses_the_minimum_width():
    # a sleeping house forecast at 0.10-0.11 kW: 0.2 kW more is 2 x 50 W, not 20 widths
    (score,) = interval_score([0.31], [0.10], [0.11], min_width_kw=0.1)
    assert score == pytest.approx(2.0)


def test_interval_score_missing_actual_or_forecast_scores_zero():
    assert interval_score([np.nan, 2.0], [0.0, np.nan], [1.0, np.nan]).tolist() == [0.0, 0.0]


def _points(value: float, steps: int = 4) -> np.ndarray:
    return np.tile([value - 0.5, value, value + 0.5], (steps, 1))


def test_score_steps_uses_the_previous_steps_forecast_in_the_batch():
    # household 0: steps at bins 10 and 11; step 10's forecast covers bin 10 with 1 +- 0.5
    household = np.array([0, 0])
    issued = np.array([10, 11]) * BIN_US
    forecasts = np.stack([_points(1.0), _points(9.0)])
    scores = score_steps(
        household,
        issued - BIN_US,
        np.array([9.0, 3.5]),
        issued,
        forecasts,
        np.array([True, True]),
        [(None, np.empty((0, 3)))],
        900,
    )
    # step 10 completes bin 9: nothing covers it; step 11 completes bin 10: 3.5 vs <= 1.5
    assert scores.tolist() == [0.0, 2.0]


def test_score_steps_falls_back_to_the_forecast_kept_in_the_state():
    prior = (8 * BIN_US, _points(2.0))  # issued at bin 8: covers bins 8..11
    scores = score_steps(
        np.array([0]),
        np.array([10 * BIN_US]),
        np.array([0.5]),
        np.array([11 * BIN_US]),
        np.full((1, 4, 3), np.nan),
        np.array([False]),
        [prior],
        900,
    )
    assert scores.tolist() == [1.0]  # 0.5 kW is one width below 1.5


def test_score_steps_does_not_look_across_households():
    household = np.array([0, 1])
    issued = np.array([11, 11]) * BIN_US
    forecasts = np.stack([_points(100.0), _points(1.0)])
    scores = score_steps(
        household,
        issued - BIN_US,
        np.array([1.0, 1.0]),
        issued,
        forecasts,
        np.array([True, True]),
        [(None, np.empty((0, 3)))] * 2,
        900,
    )
    assert scores.tolist() == [0.0, 0.0]


def test_score_steps_forecast_that_ended_before_the_bin_is_not_used():
    prior = (0, _points(2.0))  # covers bins 0..3 only
    scores = score_steps(
        np.array([0]),
        np.array([10 * BIN_US]),
        np.array([50.0]),
        np.array([11 * BIN_US]),
        np.full((1, 4, 3), np.nan),
        np.array([False]),
        [prior],
        900,
    )
    assert scores.tolist() == [0.0]
