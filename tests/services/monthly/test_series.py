"""Daily series on a dense calendar, and hourly power from readings."""

from __future__ import annotations

import datetime as dt

import numpy as np

from services.monthly.core.series import DailySeries, hourly_mean_kw

D = dt.date


def test_from_days_places_values_on_a_calendar_with_gaps():
    s = DailySeries.from_days("h1", [D(2024, 1, 3), D(2024, 1, 1)], [12.0, 10.0], [0.5, 1.0])

    assert (s.start, s.end, len(s)) == (D(2024, 1, 1), D(2024, 1, 3), 3)
    np.testing.assert_array_equal(s.kwh, [10.0, np.nan, 12.0])
    assert s.usable(0.9).tolist() == [True, False, False]


def test_from_days_turns_non_finite_values_into_gaps():
    s = DailySeries.from_days("h1", [D(2024, 1, 1), D(2024, 1, 2)], [np.inf, -1.0])

    assert np.isnan(s.kwh[0])
    assert s.coverage[0] == 0
    assert s.usable().tolist() == [False, False]  # negative kWh is not usable either


def test_until_and_between_cut_and_pad():
    s = DailySeries.from_days("h1", [D(2024, 1, 1), D(2024, 1, 2)], [1.0, 2.0])

    assert s.until(D(2024, 1, 1)).kwh.tolist() == [1.0]
    assert len(s.until(D(2023, 12, 31))) == 0
    padded = s.between(D(2023, 12, 31), D(2024, 1, 3))
    assert padded.start == D(2023, 12, 31)
    np.testing.assert_array_equal(padded.kwh, [np.nan, 1.0, 2.0, np.nan])


def test_hourly_mean_kw_from_power_and_from_interval_energy():
    hour = 3_600_000_000
    ts = np.array([0, 60_000_000, hour, hour + 1_800_000_000], dtype=np.int64)
    power = np.array([1.0, 3.0, np.nan, np.nan])
    energy = np.array([np.nan, np.nan, 0.5, 1.0])
    interval = np.array([np.nan, np.nan, 1800.0, 1800.0])

    hourly = hourly_mean_kw(ts, power_kw=power, energy_kwh=energy, interval_s=interval)

    assert hourly.hours.astype(str).tolist() == ["1970-01-01T00", "1970-01-01T01"]
    assert hourly.kw.tolist() == [2.0, 1.5]
    assert len(hourly_mean_kw(ts, power_kw=np.full(4, np.nan))) == 0
