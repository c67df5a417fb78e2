"""The consumption core: minutes from readings, idempotent merges, aggregates."""

from __future__ import annotations

import datetime as dt
import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.gateway.core import consumption, model, pipeline, queries, tokens
from services.gateway.core.consumption import (
    MINUTE_US,
    DayKey,
    aggregate,
    combine_updates,
    day_energy_kwh,
    decode_minutes,
    encode_minutes,
    merge_minutes,
    minute_updates,
)
from shared.batch import ReadingBatch, datetime_to_us

T0 = dt.datetime(2007, 4, 1, tzinfo=dt.UTC)


def _power(minutes: list[int], kw: list[float], household: str = "uci-0001") -> ReadingBatch:
    stamps = np.array([datetime_to_us(T0) + m * MINUTE_US for m in minutes])
    return ReadingBatch(household, stamps, {"global_active_power_kw": np.array(kw)})


@pytest.mark.parametrize("module", [consumption, model, pipeline, queries, tokens])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_minute_updates_split_days_and_last_reading_wins():
    batch = _power([1438, 1439, 1440, 1439], [1.0, 2.0, 3.0, 5.0])

    updates = minute_updates(batch)

    first, second = DayKey("uci-0001", T0.date()), DayKey("uci-0001", dt.date(2007, 4, 2))
    assert list(updates) == [first, second]
    assert updates[first].minutes.tolist() == [1438, 1439]
    assert updates[first].kw.tolist() == [1.0, 5.0]  # the correction of 23:59 wins
    assert updates[second].minutes.tolist() == [0]


def test_minute_updates_spread_energy_only_half_hours():
    stamps = np.array([datetime_to_us(T0), datetime_to_us(T0) + 30 * MINUTE_US])
    batch = ReadingBatch(
        "MAC000002",
        stamps,
        {"energy_kwh": np.array([0.25, 0.5]), "interval_s": np.array([1800.0, 1800.0])},
    )

    (update,) = minute_updates(batch).values()

    assert update.minutes.tolist() == list(range(60))
    assert update.kw[:30].tolist() == [0.5] * 30
    assert update.kw[30:].tolist() == [1.0] * 30
    day, _ = merge_minutes(None, update)
    assert day_energy_kwh(day) == pytest.approx(0.75)


def test_minute_updates_skip_rows_without_consumption():
    batch = ReadingBatch("uci-0001", np.array([0]), {"voltage_v": np.array([240.0])})

    assert minute_updates(batch) == {}


def test_merge_minutes_redelivery_is_a_no_op():
    (update,) = minute_updates(_power([0, 1, 2], [1.0, 2.0, 3.0])).values()
    day, changed = merge_minutes(None, update)

    again, changed_again = merge_minutes(day, update)

    assert changed
    assert not changed_again
    np.testing.assert_array_equal(again, day)
    assert day_energy_kwh(again) == pytest.approx(6.0 / 60)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 2 * 1440), st.floats(0, 50)), min_size=1, max_size=20),
        min_size=1,
        max_size=5,
    ),
    st.integers(0, 4),
)
def test_merge_minutes_any_redelivered_suffix_gives_the_same_days(records, replay_from):
    """Kinesis redelivers from the lowest failed record: the result must not change."""
    batches = [_power([m for m, _ in r], [kw for _, kw in r]) for r in records]
    replay = batches + batches[min(replay_from, len(batches) - 1) :]

    def build(sequence):
        days: dict[DayKey, np.ndarray] = {}
        for batch in sequence:
            for key, update in minute_updates(batch).items():
                days[key], _ = merge_minutes(days.get(key), update)
        return days

    once, twice = build(batches), build(replay)
    assert once.keys() == twice.keys()
    for key in once:
        np.testing.assert_array_equal(once[key], twice[key])


def test_combine_updates_keeps_arrival_order():
    (a,) = minute_updates(_power([5, 6], [1.0, 1.0])).values()
    (b,) = minute_updates(_power([6, 7], [2.0, 2.0])).values()

    combined = combine_updates([a, b])

    assert combined.minutes.tolist() == [5, 6, 7]
    assert combined.kw.tolist() == [1.0, 2.0, 2.0]


def test_encode_minutes_round_trips_and_refuses_garbage():
    (update,) = minute_updates(_power([0, 100], [1.5, 2.5])).values()
    day, _ = merge_minutes(None, update)

    np.testing.assert_array_equal(decode_minutes(encode_minutes(day)), day)
    with pytest.raises(ValueError, match="zlib"):
        decode_minutes(b"not zlib")


def test_aggregate_hours_sum_energy_and_leave_gaps_out():
    batch = _power(list(range(0, 30)) + list(range(120, 180)), [2.0] * 30 + [1.0] * 60)
    days = {}
    for key, update in minute_updates(batch).items():
        days[key.day], _ = merge_minutes(None, update)

    points = aggregate(days, start=T0, end=T0 + dt.timedelta(days=1), resolution="hour")

    assert [p.start.hour for p in points] == [0, 2]  # hour 1 has no reading: no point
    assert points[0].kwh == pytest.approx(1.0)
    assert (points[0].minutes, points[0].max_kw) == (30, 2.0)
    assert points[1].kwh == pytest.approx(1.0)


def test_aggregate_range_is_half_open_at_minute_resolution():
    days = {}
    for key, update in minute_updates(_power(list(range(10)), [1.0] * 10)).items():
        days[key.day], _ = merge_minutes(None, update)
    start = T0 + dt.timedelta(minutes=2, seconds=30)

    points = aggregate(days, start=start, end=T0 + dt.timedelta(minutes=5), resolution="minute")

    assert [p.start.minute for p in points] == [3, 4]


def test_aggregate_days_span_several_items():
    batch = _power([0, 1440, 2 * 1440 + 5], [1.0, 2.0, 3.0])
    days = {}
    for key, update in minute_updates(batch).items():
        days[key.day], _ = merge_minutes(None, update)

    points = aggregate(days, start=T0, end=T0 + dt.timedelta(days=3), resolution="day")

    assert [p.start.day for p in points] == [1, 2, 3]
    assert [p.mean_kw for p in points] == [1.0, 2.0, 3.0]
