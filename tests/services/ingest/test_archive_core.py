"""The archive's pure core: day split, grouping, merge/dedupe, stream positions, summaries."""

from __future__ import annotations

import datetime as dt
import doctest
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.core import archive
from services.ingest.core.archive import (
    DayKey,
    DayPiece,
    StreamPosition,
    group_by_household_day,
    last_position,
    merge_day,
    split_by_day,
    summarize_day,
    unmerged,
    utc_day,
)
from shared.batch import ReadingBatch, datetime_to_us

MINUTE_US = 60_000_000
APRIL_1 = dt.date(2007, 4, 1)
APRIL_1_US = datetime_to_us(dt.datetime(2007, 4, 1, tzinfo=dt.UTC))


def minutes(*offsets: int, power: list[float] | None = None, household: str = "h1") -> ReadingBatch:
    """Minute readings at ``APRIL_1 + offset`` minutes (negative: 31 March)."""
    values = power if power is not None else [1.0 + i for i in range(len(offsets))]
    return ReadingBatch(
        household,
        APRIL_1_US + np.array(offsets, dtype=np.int64) * MINUTE_US,
        {"global_active_power_kw": np.array(values, dtype=np.float64)},
    )


def stamps(batch: ReadingBatch) -> list[int]:
    return ((batch.timestamps_us - APRIL_1_US) // MINUTE_US).tolist()


def power(batch: ReadingBatch) -> list[float]:
    return batch.columns["global_active_power_kw"].tolist()


def position(sequence: int, shard: str = "shardId-000000000000") -> StreamPosition:
    return StreamPosition("readings", shard, sequence)


def test_archive_docstring_examples_run():
    result = doctest.testmod(archive, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


# ---------------------------------------------------------------------------- days


def test_utc_day_floors_before_the_epoch():
    assert utc_day(-1) == dt.date(1969, 12, 31)
    assert utc_day(APRIL_1_US - 1) == dt.date(2007, 3, 31)
    assert utc_day(APRIL_1_US) == APRIL_1


def test_split_by_day_cuts_at_utc_midnight_not_local():
    # 23:59 and 00:00 UTC; in Sceaux (UTC+1) both are on 1 April
    batch = minutes(-61, -1, 0, 59)

    parts = split_by_day(batch)

    assert [(d, stamps(rows)) for d, rows in parts] == [
        (dt.date(2007, 3, 31), [-61, -1]),
        (APRIL_1, [0, 59]),
    ]


def test_split_by_day_unsorted_keeps_received_order_within_a_day():
    batch = minutes(1500, 5, -3, 2, 1441, power=[1, 2, 3, 4, 5])

    parts = split_by_day(batch)

    assert [(d.day, power(rows)) for d, rows in parts] == [(31, [3]), (1, [2, 4]), (2, [1, 5])]


def test_split_by_day_empty_batch_has_no_days():
    assert split_by_day(ReadingBatch.empty("h1")) == []


def test_group_by_household_day_groups_the_whole_batch_in_delivery_order():
    records = [
        (position(1), minutes(-1, 0, household="a")),
        (position(2), minutes(10, household="b")),
        (position(3), minutes(1, household="a")),
    ]

    groups = group_by_household_day(records)

    assert list(groups) == [
        DayKey("a", dt.date(2007, 3, 31)),
        DayKey("a", APRIL_1),
        DayKey("b", APRIL_1),
    ]
    april_a = groups[DayKey("a", APRIL_1)]
    assert [(p.source, p.position.sequence, stamps(p.rows)) for p in april_a] == [
        (0, 1, [0]),
        (2, 3, [1]),
    ]


# ----------------------------------------------------------------------- positions


def pieces(*sequences: int, shard: str = "shardId-000000000000") -> list[DayPiece]:
    return [DayPiece(i, position(s, shard), minutes(i)) for i, s in enumerate(sequences)]


def test_unmerged_skips_pieces_at_or_below_the_stored_position():
    assert [p.position.sequence for p in unmerged(pieces(7, 9, 10, 12), position(10))] == [12]


def test_unmerged_keeps_pieces_of_another_shard_or_stream():
    other_shard = pieces(3, shard="shardId-000000000004")
    other_stream = [DayPiece(0, StreamPosition("other", "shardId-000000000000", 3), minutes(0))]

    assert unmerged(other_shard, position(10)) == other_shard
    assert unmerged(other_stream, position(10)) == other_stream


def test_unmerged_without_position_keeps_everything():
    given = pieces(1, 2)
    assert unmerged(given, None) == given


def test_last_position_is_the_highest_sequence_of_the_batch_shard():
    assert last_position(pieces(12, 30, 25)) == position(30)
    with pytest.raises(ValueError, match="no pieces"):
        last_position([])


def test_sequence_numbers_compare_as_integers_not_text():
    # Kinesis sequence numbers are decimal strings of varying length
    assert position(10**55).covers(position(9 * 10**54))
    assert not position(9 * 10**54).covers(position(10**55))


# --------------------------------------------------------------------------- merge


def test_merge_day_first_write_sorts_and_dedupes():
    merged = merge_day(None, [minutes(5, 1, 5, 3, power=[1, 2, 3, 4])])

    assert stamps(merged.rows) == [1, 3, 5]
    assert power(merged.rows) == [2, 4, 3]  # 5 came twice: the last received wins
    assert (merged.added, merged.updated, merged.duplicates, merged.changed) == (3, 0, 1, True)


def test_merge_day_late_reading_lands_in_time_order():
    existing = minutes(0, 1, 3)

    merged = merge_day(existing, [minutes(2, power=[9])])

    assert stamps(merged.rows) == [0, 1, 2, 3]
    assert power(merged.rows) == [1, 2, 9, 3]
    assert (merged.added, merged.updated, merged.duplicates) == (1, 0, 0)


def test_merge_day_identical_redelivery_changes_nothing():
    existing = minutes(0, 1, 2)

    merged = merge_day(existing, [minutes(1, 2, power=[2, 3]), minutes(0, power=[1])])

    assert not merged.changed
    assert (merged.added, merged.updated, merged.duplicates) == (0, 0, 3)
    assert stamps(merged.rows) == [0, 1, 2]


def test_merge_day_conflicting_copy_received_later_wins():
    existing = minutes(0, 1, power=[1, 2])

    merged = merge_day(existing, [minutes(1, power=[5]), minutes(1, power=[7])])

    assert power(merged.rows) == [1, 7]
    assert (merged.added, merged.updated, merged.duplicates, merged.changed) == (0, 1, 1, True)


def test_merge_day_reports_every_replaced_value_once_and_no_identical_copy():
    existing = minutes(0, 1, 2, power=[1, 2, 3])

    merged = merge_day(
        existing,
        [
            minutes(1, 2, power=[5, 3]),  # 2 is an identical copy: a duplicate
            minutes(1, power=[7]),
            minutes(1, power=[5]),  # the last received: 5 wins over the stored 2 and the 7
        ],
    )

    assert power(merged.rows) == [1, 5, 3]
    # the replaced values: the archived 2 and the 7; the earlier 5 equals the winner
    assert merged.replaced is not None
    assert (stamps(merged.replaced), power(merged.replaced)) == ([1, 1], [2, 7])
    assert merged.conflicts == 2


def test_merge_day_identical_redelivery_records_no_conflict():
    merged = merge_day(minutes(0, 1), [minutes(0, 1), minutes(1, power=[2])])

    assert merged.replaced is None
    assert merged.conflicts == 0


def test_merge_day_a_value_that_appears_or_disappears_is_a_change():
    existing = minutes(0)
    with_voltage = ReadingBatch(
        "h1",
        existing.timestamps_us,
        {"global_active_power_kw": [1.0], "voltage_v": [230.0]},
    )

    assert merge_day(existing, [with_voltage]).updated == 1
    assert merge_day(with_voltage, [existing]).updated == 1  # the later copy has no voltage


def test_merge_day_negative_zero_is_a_change_bit_for_bit():
    assert merge_day(minutes(0, power=[0.0]), [minutes(0, power=[-0.0])]).changed


def test_merge_day_rejects_another_household():
    with pytest.raises(ValueError, match="one household"):
        merge_day(minutes(0), [minutes(1, household="h2")])


def test_merge_day_needs_something_to_merge():
    with pytest.raises(ValueError, match="nothing to merge"):
        merge_day(None, [])


offsets = st.lists(st.integers(0, 30), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(offsets, st.lists(st.integers(1, 5), min_size=1, max_size=8), st.integers(0, 40))
def test_merge_day_in_pieces_equals_merge_at_once(stamps_, sizes, replay_from):
    """Folding records one merge at a time (any batching, any replay of a suffix) gives
    the same day as one merge of everything: what makes redelivery harmless."""
    values = [float(i) for i in range(len(stamps_))]  # distinct: conflicts are visible
    rows = minutes(*stamps_, power=values)
    cuts = np.cumsum([0, *sizes])
    records = [rows.slice(int(a), int(b)) for a, b in itertools.pairwise(cuts)]
    records = [r for r in records if len(r)]
    if cuts[-1] < len(rows):
        records.append(rows.slice(int(cuts[-1]), None))

    at_once = merge_day(None, records).rows
    state = None
    for record in records:
        state = merge_day(state, [record]).rows
    assert state is not None
    replayed = merge_day(state, records[min(replay_from, len(records) - 1) :])

    for result in (state, replayed.rows):
        assert stamps(result) == stamps(at_once)
        assert power(result) == power(at_once)
    assert not replayed.changed  # a redelivered suffix holds no news: nothing to rewrite


# ------------------------------------------------------------------------ summaries


def test_summarize_day_minute_readings():
    rows = minutes(0, 1, 2, 1439, power=[1.2, 3.6, 0.6, 2.4])

    summary = summarize_day(rows, APRIL_1)

    assert summary.kwh == pytest.approx((1.2 + 3.6 + 0.6 + 2.4) / 60)
    assert summary.peak_kw == 3.6
    assert summary.coverage == 4 / 1440
    assert summary.readings == 4
    assert summary.first_timestamp == dt.datetime(2007, 4, 1, tzinfo=dt.UTC)
    assert summary.last_timestamp == dt.datetime(2007, 4, 1, 23, 59, tzinfo=dt.UTC)


def test_summarize_day_energy_only_half_hours():
    half_hour = 30 * MINUTE_US
    rows = ReadingBatch(
        "MAC000002",
        APRIL_1_US + np.arange(48) * half_hour,
        {"energy_kwh": np.full(48, 0.25), "interval_s": np.full(48, 1800.0)},
    )

    summary = summarize_day(rows, APRIL_1)

    assert summary.kwh == pytest.approx(12.0)
    assert summary.peak_kw == pytest.approx(0.5)  # 0.25 kWh in half an hour
    assert summary.coverage == 1.0


def test_summarize_day_mixed_power_and_energy_readings():
    rows = ReadingBatch(
        "h1",
        APRIL_1_US + np.array([0, 60]) * MINUTE_US,
        {
            "global_active_power_kw": [2.0, np.nan],
            "energy_kwh": [np.nan, 1.5],
            "interval_s": [np.nan, 3600.0],
        },
    )

    summary = summarize_day(rows, APRIL_1)

    assert summary.kwh == pytest.approx(2.0 / 60 + 1.5)
    assert summary.peak_kw == 2.0
    assert summary.coverage == pytest.approx(61 / 1440)


def test_summarize_day_overlaps_count_once_and_stop_at_midnight():
    rows = ReadingBatch(
        "h1",
        APRIL_1_US + np.array([0, 10, 1430]) * MINUTE_US,
        {"energy_kwh": [0.1, 0.1, 0.1], "interval_s": [1800.0, 60.0, 1800.0]},
    )

    summary = summarize_day(rows, APRIL_1)

    assert summary.coverage == pytest.approx((30 + 10) / 1440)  # 0:10 inside 0:00-0:30


def test_summarize_day_interval_longer_than_a_day_covers_the_rest_of_it():
    rows = ReadingBatch(
        "h1", np.array([APRIL_1_US + 720 * MINUTE_US]), {"energy_kwh": [1.0], "interval_s": [1e300]}
    )

    assert summarize_day(rows, APRIL_1).coverage == 0.5


def test_summarize_day_refuses_rows_of_another_day():
    with pytest.raises(ValueError, match="outside"):
        summarize_day(minutes(-1, 0), APRIL_1)
    with pytest.raises(ValueError, match="at least one"):
        summarize_day(ReadingBatch.empty("h1"), APRIL_1)


def test_summary_json_is_deterministic():
    summary = summarize_day(minutes(0, 1), APRIL_1)

    assert summary.model_dump_json() == summarize_day(minutes(1, 0), APRIL_1).model_dump_json()
    assert type(summary).model_validate_json(summary.model_dump_json()) == summary
