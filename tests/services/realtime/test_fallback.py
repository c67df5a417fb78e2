"""Univariate fallback: seasonal naive with residual quantiles, for energy-only meters."""

from __future__ import annotations

import numpy as np
import pytest

from services.realtime.core.fallback import (
    SeasonalNaive,
    fallback_reason,
    reading_interval_s,
    target_power_kw,
)
from services.realtime.core.features import MEASUREMENTS
from shared.batch import ReadingBatch

QUANTILES = (0.1, 0.5, 0.9)


def test_fallback_for_half_hourly_meter_forecasts_half_hours_over_the_models_horizon():
    model = SeasonalNaive.for_meter(900, 16, QUANTILES, 1800)
    assert (model.resolution_s, model.horizon_steps, model.season_steps) == (1800, 8, 48)
    assert model.input_steps == 7 * 48


def test_fallback_for_minute_meter_keeps_the_models_resolution():
    model = SeasonalNaive.for_meter(900, 16, QUANTILES, 60)
    assert (model.resolution_s, model.horizon_steps) == (900, 16)


def test_fallback_resolution_divides_the_day():
    # 2,000 s meters: the next multiple of 900 s dividing 86,400 s is 2,700 s
    assert SeasonalNaive.for_meter(900, 16, QUANTILES, 2000).resolution_s == 2700


def test_fallback_predict_repeats_the_last_day_plus_residual_quantiles():
    model = SeasonalNaive(21_600, 3, QUANTILES, history_days=3)  # 4 bins a day, 3 days
    day = np.array([1.0, 2.0, 3.0, 4.0])
    windows = np.concatenate([day, day + 0.5, day + 1.0])[None]  # +0.5 kW each day

    values, reasons = model.predict(windows)

    assert reasons == [None]
    assert values.shape == (1, 3, 3)
    np.testing.assert_allclose(values[0, :, 1], [2.5, 3.5, 4.5])  # yesterday + 0.5
    np.testing.assert_allclose(values[0, :, 0], values[0, :, 2])  # constant residuals


def test_fallback_predict_interval_widens_with_noisy_residuals():
    rng = np.random.default_rng(1)
    model = SeasonalNaive(3600, 24, QUANTILES, history_days=7)
    windows = (np.tile(np.sin(np.arange(24) / 4) + 2, 7) + rng.normal(0, 0.3, 168))[None]

    values, _ = model.predict(windows)

    residuals = windows[0, 24:] - windows[0, :-24]
    width = np.quantile(residuals, 0.9) - np.quantile(residuals, 0.1)
    np.testing.assert_allclose(values[0, :, 2] - values[0, :, 0], width)
    assert width > 0.5


def test_fallback_predict_says_why_it_cannot_forecast():
    model = SeasonalNaive(21_600, 2, QUANTILES, history_days=3)
    young = np.array([[np.nan] * 8 + [1.0, 2.0, 3.0, 4.0]])  # one day of data
    holed = np.array([[1.0] * 11 + [np.nan]])  # yesterday incomplete

    values, reasons = model.predict(np.concatenate([young, holed]))

    assert np.isnan(values).all()
    assert reasons[0].startswith("fallback warming up")
    assert "last complete day" in reasons[1]


def test_fallback_reason_names_what_the_meter_does_not_report():
    energy = ReadingBatch(
        "MAC000002",
        np.array([0]),
        {"energy_kwh": np.array([0.2]), "interval_s": np.array([1800.0])},
    )
    full = ReadingBatch("uci", np.array([0]), {m: np.array([1.0]) for m in MEASUREMENTS})

    reason = fallback_reason([energy], MEASUREMENTS)
    assert reason is not None
    assert "voltage_v" in reason
    assert "sub_metering_3_wh" in reason
    assert fallback_reason([full], MEASUREMENTS) is None


def test_fallback_target_power_from_energy_and_interval():
    batch = ReadingBatch(
        "MAC000002",
        np.array([0, 1]),
        {
            "energy_kwh": np.array([0.25, np.nan]),
            "interval_s": np.array([1800.0, np.nan]),
            "global_active_power_kw": np.array([np.nan, 1.5]),
        },
    )
    assert target_power_kw(batch).tolist() == [0.5, 1.5]
    assert reading_interval_s([batch]) == 1800
    assert reading_interval_s([ReadingBatch.empty("x")]) == 60


def test_fallback_needs_two_days_of_history():
    with pytest.raises(ValueError, match="history_days"):
        SeasonalNaive(1800, 2, QUANTILES, history_days=1)
