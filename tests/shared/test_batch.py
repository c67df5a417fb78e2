"""Columnar batches of one household."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.batch import (
    MAX_TIMESTAMP_US,
    ReadingBatch,
    datetime_to_us,
    us_to_datetime,
)
from shared.schema import MEASUREMENT_FIELDS, MeterReading
from tests.shared.strategies import assert_same_batch, aware_datetimes, readings

T0 = dt.datetime(2007, 4, 1, tzinfo=dt.UTC)


def make(minute: int, power: float | None = 1.0, household_id: str = "h1") -> MeterReading:
    return MeterReading(
        household_id=household_id,
        timestamp=T0 + dt.timedelta(minutes=minute),
        global_active_power_kw=power,
        energy_kwh=None if power is not None else 0.1,
        interval_s=None if power is not None else 60.0,
    )


@given(st.lists(readings(household_id="h1"), min_size=1, max_size=20))
def test_reading_batch_round_trips_models(models: list[MeterReading]) -> None:
    assert ReadingBatch.from_readings(models).to_readings() == models


@given(aware_datetimes)
def test_datetime_to_us_is_exact(value: dt.datetime) -> None:
    assert us_to_datetime(datetime_to_us(value)) == value


def test_reading_batch_from_readings_uses_nan_for_absent_values() -> None:
    batch = ReadingBatch.from_readings([make(0, power=2.5), make(1, power=None)])
    np.testing.assert_array_equal(batch.columns["global_active_power_kw"], [2.5, np.nan])
    np.testing.assert_array_equal(batch.columns["energy_kwh"], [np.nan, 0.1])
    assert batch.timestamps_us.dtype == np.int64
    assert batch.timestamps_us.tolist() == [datetime_to_us(T0), datetime_to_us(T0) + 60_000_000]


def test_reading_batch_refuses_mixed_households() -> None:
    with pytest.raises(ValueError, match="exactly one household"):
        ReadingBatch.from_readings([make(0), make(1, household_id="h2")])
    with pytest.raises(ValueError, match="exactly one household"):
        ReadingBatch.from_readings([make(0)], household_id="h2")
    with pytest.raises(ValueError, match="exactly one household"):
        ReadingBatch.concat([ReadingBatch.empty("h1"), ReadingBatch.empty("h2")])


def test_reading_batch_empty_needs_household() -> None:
    assert len(ReadingBatch.from_readings([], household_id="h1")) == 0
    with pytest.raises(ValueError, match="exactly one household"):
        ReadingBatch.from_readings([])
    with pytest.raises(ValueError, match="at least one"):
        ReadingBatch.concat([])


def test_reading_batch_fills_missing_columns_and_is_read_only() -> None:
    stamps = np.array([3, 1, 2], dtype=np.int64)
    batch = ReadingBatch("h1", stamps, {"voltage_v": np.array([230.0, 231.0, 232.0])})
    assert set(batch.columns) == set(MEASUREMENT_FIELDS)
    assert np.isnan(batch.columns["energy_kwh"]).all()
    assert batch.present_columns() == ("voltage_v",)
    with pytest.raises(ValueError, match="read-only"):
        batch.columns["voltage_v"][0] = 0.0
    with pytest.raises(ValueError, match="read-only"):
        batch.timestamps_us[0] = 0


@pytest.mark.parametrize(
    ("household_id", "stamps", "columns", "error"),
    [
        ("h1", np.array([1.0, 2.0]), {}, TypeError),
        ("h1", np.array([[1, 2]]), {}, TypeError),
        ("h1", np.array([1, 2]), {"voltage_v": np.array([1.0])}, ValueError),
        ("h1", np.array([1, 2]), {"watts": np.array([1.0, 2.0])}, ValueError),
        ("bad id", np.array([1, 2]), {}, ValueError),
    ],
)
def test_reading_batch_rejects_inconsistent_arrays(
    household_id: str, stamps: np.ndarray, columns: dict, error: type[Exception]
) -> None:
    with pytest.raises(error):
        ReadingBatch(household_id, stamps, columns)


def test_reading_batch_slice_take_concat_and_sort() -> None:
    batch = ReadingBatch.from_readings([make(m, power=float(m)) for m in (5, 3, 3, 1, 4)])
    assert batch.slice(1, 3).timestamps_us.tolist() == batch.timestamps_us[1:3].tolist()
    assert len(batch.slice(4, None)) == 1
    ordered = batch.sorted_by_time()
    np.testing.assert_array_equal(ordered.columns["global_active_power_kw"], [1, 3, 3, 4, 5])
    picked = batch.take(batch.columns["global_active_power_kw"] > 3)
    assert picked.columns["global_active_power_kw"].tolist() == [5.0, 4.0]
    assert_same_batch(ReadingBatch.concat([batch.slice(0, 2), batch.slice(2, None)]), batch)


def test_reading_batch_sort_is_stable() -> None:
    stamps = np.array([2, 1, 2, 1], dtype=np.int64)
    batch = ReadingBatch("h1", stamps, {"voltage_v": np.arange(4.0)})
    assert batch.sorted_by_time().columns["voltage_v"].tolist() == [1.0, 3.0, 0.0, 2.0]


def test_reading_batch_to_readings_refuses_out_of_range_timestamps() -> None:
    batch = ReadingBatch(
        "h1", np.array([MAX_TIMESTAMP_US + 1]), {"global_active_power_kw": np.array([1.0])}
    )
    with pytest.raises(ValueError, match="range of datetime"):
        batch.to_readings()


def test_reading_batch_to_readings_refuses_rows_the_model_refuses() -> None:
    batch = ReadingBatch("h1", np.array([0]), {"voltage_v": np.array([230.0])})
    with pytest.raises(ValueError, match="global_active_power_kw"):
        batch.to_readings()
