"""The archive's Parquet format: schema, round trip, older files, one household per file."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from shared.archive_parquet import ARCHIVE_SCHEMA, decode_day, encode_day, from_table, to_table
from shared.batch import ReadingBatch, datetime_to_us
from shared.schema import MEASUREMENT_FIELDS

MINUTE_US = 60_000_000
APRIL_1_US = datetime_to_us(dt.datetime(2007, 4, 1, tzinfo=dt.UTC))


def minutes(*offsets: int, household: str = "h1") -> ReadingBatch:
    """Minute readings at ``APRIL_1 + offset`` minutes, power 1.0, 2.0, ..."""
    return ReadingBatch(
        household,
        APRIL_1_US + np.array(offsets, dtype=np.int64) * MINUTE_US,
        {"global_active_power_kw": 1.0 + np.arange(len(offsets), dtype=np.float64)},
    )


def power(batch: ReadingBatch) -> list[float]:
    return batch.columns["global_active_power_kw"].tolist()


def test_table_round_trip_keeps_every_value_and_absence():
    batch = ReadingBatch(
        "MAC000002",
        np.array([APRIL_1_US, APRIL_1_US + 1]),
        {"energy_kwh": [0.219, -0.0], "interval_s": [1800.0, np.nan], "voltage_v": [5e-324, 1]},
    )

    table = to_table(batch)
    back = from_table(table)

    assert table.schema.equals(ARCHIVE_SCHEMA)
    assert table.column("interval_s").null_count == 1
    assert table.column("global_active_power_kw").null_count == 2  # NaN is stored as null
    assert table.column("timestamp")[0].as_py() == dt.datetime(2007, 4, 1, tzinfo=dt.UTC)
    assert back.household_id == "MAC000002"
    np.testing.assert_array_equal(back.timestamps_us, batch.timestamps_us)
    for name in MEASUREMENT_FIELDS:
        np.testing.assert_array_equal(back.columns[name], batch.columns[name])
    assert np.signbit(back.columns["energy_kwh"][1])  # -0.0 stays -0.0
    assert back.columns["voltage_v"][0] == 5e-324  # subnormals too


def test_archive_schema_is_explicit_and_stable():
    assert ARCHIVE_SCHEMA.names == ["timestamp", "household_id", *MEASUREMENT_FIELDS]
    assert ARCHIVE_SCHEMA.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert not ARCHIVE_SCHEMA.field("timestamp").nullable
    assert all(
        ARCHIVE_SCHEMA.field(n).type == pa.float64() and ARCHIVE_SCHEMA.field(n).nullable
        for n in MEASUREMENT_FIELDS
    )


def test_from_table_reads_an_older_file_without_new_columns():
    table = to_table(minutes(0, 1)).drop_columns(["energy_kwh", "interval_s"])

    back = from_table(table)

    assert power(back) == [1.0, 2.0]
    assert np.isnan(back.columns["energy_kwh"]).all()


def test_from_table_refuses_several_households():
    table = pa.concat_tables([to_table(minutes(0)), to_table(minutes(1, household="h2"))])
    with pytest.raises(ValueError, match="one household"):
        from_table(table)


def test_decode_day_reads_what_encode_day_wrote():
    rows = minutes(0, 1, 2, household="site:7")

    back = decode_day(encode_day(rows))

    assert back.household_id == "site:7"
    np.testing.assert_array_equal(back.timestamps_us, rows.timestamps_us)
    assert power(back) == [1.0, 2.0, 3.0]
