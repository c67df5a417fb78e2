"""Hypothesis strategies for readings and columnar batches."""

from __future__ import annotations

import datetime as dt

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shared.batch import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, ReadingBatch
from shared.schema import MEASUREMENT_FIELDS, MeterReading

household_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")

# Any float64 bit pattern the codec must carry: -0.0, subnormals, huge, inf, NaN.
any_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
finite_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)

aware_datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 2),
    max_value=dt.datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [dt.UTC, dt.timezone(dt.timedelta(hours=1)), dt.timezone(dt.timedelta(hours=-9.5))]
    ),
)


@st.composite
def batches(
    draw: st.DrawFn, *, max_rows: int = 40, floats: st.SearchStrategy[float] = any_floats
) -> ReadingBatch:
    """Batches with a random subset of present columns and unsorted timestamps."""
    n = draw(st.integers(1, max_rows))
    present = draw(st.sets(st.sampled_from(MEASUREMENT_FIELDS)))
    stamps = draw(hnp.arrays(np.int64, n, elements=st.integers(MIN_TIMESTAMP_US, MAX_TIMESTAMP_US)))
    columns = {name: draw(hnp.arrays(np.float64, n, elements=floats)) for name in present}
    return ReadingBatch(draw(household_ids), stamps, columns)


@st.composite
def readings(draw: st.DrawFn, *, household_id: str | None = None) -> MeterReading:
    """Valid models: power, or energy and interval, plus any optional measurements."""
    values = {name: draw(st.none() | finite_floats) for name in MEASUREMENT_FIELDS}
    if values["global_active_power_kw"] is None:
        values["energy_kwh"] = draw(finite_floats)
        values["interval_s"] = draw(finite_floats)
    return MeterReading(
        household_id=household_id or draw(household_ids),
        timestamp=draw(aware_datetimes),
        **values,
    )


def assert_same_batch(actual: ReadingBatch, expected: ReadingBatch) -> None:
    """Same household, timestamps and absent values; present floats equal bit for bit.

    NaN means "absent", so its bit pattern (sign, payload) is not significant.
    """
    assert actual.household_id == expected.household_id
    np.testing.assert_array_equal(actual.timestamps_us, expected.timestamps_us)
    for name in MEASUREMENT_FIELDS:
        got, want = actual.columns[name], expected.columns[name]
        absent = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), absent, err_msg=name)
        np.testing.assert_array_equal(
            got[~absent].view(np.int64), want[~absent].view(np.int64), err_msg=name
        )
