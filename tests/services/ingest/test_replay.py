"""The UCI replay: pure core (plan, shift, windows, pacing) and the paced driver."""

from __future__ import annotations

import datetime as dt
import doctest
import gzip
import io
import itertools
import math
from collections.abc import Sequence

import numpy as np
import pytest

from services.ingest.core import replay
from services.ingest.core.fleet import MINUTE_US, SCALED_UCI_COLUMNS, UciSeries
from services.ingest.core.replay import (
    Pacer,
    flush_interval_for,
    next_window_end,
    parse_speed,
    plan_replay,
    replay_shift_us,
    replay_window,
    window_step_us,
)
from services.ingest.sources import ReplayOptions, SourceReport, replay_series, run_replay
from shared.batch import ReadingBatch, datetime_to_us
from shared.codec import decode_record
from shared.streams.ports import PublishReport, StreamRecord
from shared.uci import UCI_HEADER, iter_uci
from shared.validation import SanityLimits
from tests.conftest import APRIL_2007
from tests.services.ingest.fakes import MemoryPublisher, MemoryQuarantine

WALL_START = 1_764_000_000.25  # 2025-11-24T16:00:00.25Z: not on a minute boundary


class FakeClock:
    """Wall clock in epoch seconds that only moves when slept on (or told to)."""

    def __init__(self, now: float = WALL_START) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ClockedPublisher(MemoryPublisher):
    """Notes the wall time of every publish call; each call costs ``cost_s`` of it."""

    def __init__(self, clock: FakeClock, cost_s: float = 0.0) -> None:
        super().__init__()
        self.clock = clock
        self.cost_s = cost_s
        self.calls: list[tuple[float, list[StreamRecord]]] = []

    def publish(self, records: Sequence[StreamRecord]) -> PublishReport:
        self.calls.append((self.clock.now, list(records)))
        self.clock.now += self.cost_s
        return super().publish(records)


def april_lines(rows: int) -> bytes:
    """The header and the first ``rows`` rows of the real April 2007 slice."""
    with gzip.open(APRIL_2007, "rb") as text:
        return b"".join(itertools.islice(text, rows + 1))


@pytest.fixture(scope="module")
def april() -> UciSeries:
    return UciSeries.from_chunks(iter_uci(APRIL_2007))


@pytest.fixture(scope="module")
def two_days() -> UciSeries:
    return UciSeries.from_chunks(iter_uci(io.BytesIO(april_lines(2 * 1440))))


def decoded(records: Sequence[StreamRecord]) -> dict[str, ReadingBatch]:
    """Every household's readings, in stream order, from the published records."""
    parts: dict[str, list[ReadingBatch]] = {}
    for record in records:
        batch = decode_record(record.data)
        assert batch.household_id == record.partition_key
        parts.setdefault(batch.household_id, []).append(batch)
    return {key: ReadingBatch.concat(batches) for key, batches in parts.items()}


def test_replay_module_examples_run() -> None:
    result = doctest.testmod(replay)
    assert result.attempted > 0
    assert result.failed == 0


# ------------------------------------------------------------------------- pure core


def test_uci_series_april_grid_has_every_minute_and_reports_the_gap(april: UciSeries) -> None:
    assert len(april) == 43_200
    assert april.complete == 39_477
    assert april.malformed == ()
    first_gap = datetime_to_us(
        dt.datetime(2007, 4, 28, 0, 21, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    )
    row = (first_gap - april.start_us) // MINUTE_US
    assert not april.present[row : row + 3723].any()
    assert april.present[row - 1]
    assert april.present[row + 3723]
    assert np.isnan(april.columns["voltage_v"][row])


def test_uci_series_reports_duplicate_off_grid_and_malformed_rows() -> None:
    text = "".join(
        f"{line}\r\n"
        for line in (
            UCI_HEADER,
            "1/4/2007;00:00:00;3.480;0.238;239.530;14.400;2.000;1.000;18.000",
            "1/4/2007;00:00:00;9.000;0.238;239.530;14.400;2.000;1.000;18.000",
            "1/4/2007;00:01:30;1.000;0.238;239.530;14.400;2.000;1.000;18.000",
            "1/4/2007;00:02:00;?;?;?;?;?;?;",
            "1/4/2007;00:03:00;not-a-number",
            "1/4/2007;00:04:00;1.500;0.100;240.000;6.000;0.000;0.000;0.000",
        )
    ).encode()
    series = UciSeries.from_chunks(iter_uci(io.BytesIO(text)))
    assert len(series) == 5  # 00:00 .. 00:04
    assert series.present.tolist() == [True, False, False, False, True]
    assert series.columns["global_active_power_kw"][0] == 3.48  # the first of a duplicate
    reasons = " | ".join(reason for _, reason in series.malformed)
    assert "duplicate minute" in reasons
    assert "off the minute grid" in reasons
    assert "fields" in reasons  # the malformed line, with its line number
    assert any(line == 6 for line, _ in series.malformed)


def test_plan_replay_is_seeded_and_household_one_is_the_file() -> None:
    plan = plan_replay(50, minutes=43_200, seed=3)
    again = plan_replay(50, minutes=43_200, seed=3)
    other = plan_replay(50, minutes=43_200, seed=4)
    assert plan.household_ids[:2] == ("uci-0001", "uci-0002")
    assert len(set(plan.household_ids)) == 50
    assert (plan.day_offsets == again.day_offsets).all()
    assert (plan.scales == again.scales).all()
    assert (plan.scales != other.scales).any()
    assert plan.day_offsets[0] == 0
    assert plan.scales[0] == 1.0
    assert ((plan.day_offsets >= 0) & (plan.day_offsets < 30)).all()
    assert ((plan.scales >= 0.75) & (plan.scales <= 1.2)).all()
    assert len({(d, s) for d, s in zip(plan.day_offsets, plan.scales, strict=True)}) == 50


def test_plan_replay_ids_widen_beyond_9999_households() -> None:
    plan = plan_replay(10_000, minutes=1440)
    assert plan.household_ids[-1] == "uci-10000"
    assert plan.household_ids[0] == "uci-00001"


def test_replay_shift_now_puts_the_first_reading_on_the_current_minute() -> None:
    first = datetime_to_us(dt.datetime(2007, 3, 31, 23, tzinfo=dt.UTC))
    now = datetime_to_us(dt.datetime(2025, 11, 24, 16, 0, 37, 500, tzinfo=dt.UTC))
    shift = replay_shift_us(first, "now", now_us=now)
    assert first + shift == datetime_to_us(dt.datetime(2025, 11, 24, 16, 0, tzinfo=dt.UTC))
    assert replay_shift_us(first, "original", now_us=now) == 0
    there = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert first + replay_shift_us(first, there, now_us=now) == datetime_to_us(there)
    with pytest.raises(ValueError, match="timezone-aware"):
        replay_shift_us(first, dt.datetime(2030, 1, 1), now_us=now)
    with pytest.raises(ValueError, match="'now', 'original'"):
        replay_shift_us(first, "tomorrow", now_us=now)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"), [("600", 600.0), ("max", math.inf), ("0", math.inf), (1.5, 1.5)]
)
def test_parse_speed_accepts_factors_and_max(text: str | float, expected: float) -> None:
    assert parse_speed(text) == expected


@pytest.mark.parametrize("text", ["-1", "nan", "fast"])
def test_parse_speed_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (float() and ours both say ValueError)
        parse_speed(text)


def test_flush_interval_keeps_each_shard_under_its_record_limit() -> None:
    for households, shards in ((10, 1), (1000, 4), (10_000, 4), (50_000, 8)):
        interval = flush_interval_for(households, shards)
        assert interval >= 1.0
        assert households / interval / shards <= 800  # 80 % of 1,000 records/s
    assert window_step_us(600, 1.0) == 10 * MINUTE_US
    assert window_step_us(1, 1.0) == MINUTE_US  # never below the data's resolution


def test_pacer_maps_wall_time_to_simulated_time_and_back() -> None:
    pacer = Pacer(600.0, sim_start_us=0, wall_start_s=100.0)
    assert pacer.sim_us(101.0) == 600_000_000
    assert pacer.wall_s(600_000_000) == 101.0
    assert not Pacer(math.inf, 0, 0.0).paced


def test_next_window_end_is_one_step_on_time_and_catches_up_when_late() -> None:
    common = {"start_us": 0, "end_us": 10_000, "step_us": 100, "max_step_us": 400}
    assert next_window_end(0, sim_now_us=100, **common) == 100
    assert next_window_end(100, sim_now_us=350, **common) == 300  # late: two steps at once
    assert next_window_end(100, sim_now_us=5_000, **common) == 500  # bounded catch-up
    assert next_window_end(9_950, sim_now_us=20_000, **common) == 10_000  # the end
    assert next_window_end(0, sim_now_us=None, **common) == 400  # unpaced: largest window


def test_replay_window_reads_each_household_from_its_day_offset(april: UciSeries) -> None:
    plan = plan_replay(4, minutes=len(april), seed=1)
    window = replay_window(april, plan, shift_us=0, k0=43_100, k1=43_200)
    assert window.household_ids == plan.household_ids
    for h in range(4):
        rows = (np.arange(43_100, 43_200) + 1440 * plan.day_offsets[h]) % len(april)
        assert (window.present[h] == april.present[rows]).all()
        for name, column in april.columns.items():
            factor = plan.scales[h] if name in SCALED_UCI_COLUMNS else 1.0
            np.testing.assert_array_equal(window.columns[name][h], column[rows] * factor)
    assert (np.diff(window.timestamps_us) == MINUTE_US).all()


# ---------------------------------------------------------------------------- driver


def test_replay_series_unpaced_publishes_every_real_row_once_per_household(
    april: UciSeries,
) -> None:
    publisher = MemoryPublisher()
    options = ReplayOptions(speed="max", households=3, start="original")
    report = replay_series(april, publisher, options)
    assert report.readings_published == 3 * 39_477
    assert report.rows_missing == 3 * 3_723  # gaps are reported, never filled in
    assert report.rejected == 0
    assert report.records == len(publisher.records)
    assert report.bytes == sum(len(r.data) for r in publisher.records)
    assert report.fraction == 1.0
    batches = decoded(publisher.records)
    assert sorted(batches) == ["uci-0001", "uci-0002", "uci-0003"]
    for batch in batches.values():
        assert len(batch) == 39_477
        assert (np.diff(batch.timestamps_us) > 0).all()  # per-household order kept
    # household 1 is the real house, verbatim, at its original timestamps
    real = ReadingBatch.concat([chunk.readings for chunk in iter_uci(APRIL_2007)])
    assert (batches["uci-0001"].timestamps_us == real.timestamps_us).all()
    for name in real.columns:
        np.testing.assert_array_equal(batches["uci-0001"].columns[name], real.columns[name])
    assert max(len(decode_record(r.data)) for r in publisher.records) <= 1440


def test_replay_series_start_now_moves_the_first_reading_to_the_current_minute(
    two_days: UciSeries,
) -> None:
    clock = FakeClock()
    publisher = MemoryPublisher()
    options = ReplayOptions(speed="max", start="now")
    report = replay_series(two_days, publisher, options, clock=clock, sleep=clock.sleep)
    first = min(decode_record(r.data).timestamps_us[0] for r in publisher.records)
    assert first == math.floor(WALL_START / 60) * 60 * 1_000_000
    assert report.simulated_start == dt.datetime(2025, 11, 24, 16, 0, tzinfo=dt.UTC)
    assert clock.sleeps == []  # unpaced never waits


def test_replay_series_paced_publishes_each_minute_only_after_it_elapsed(
    two_days: UciSeries,
) -> None:
    clock = FakeClock()
    publisher = ClockedPublisher(clock)
    progress: list[float] = []
    report = replay_series(
        two_days,
        publisher,
        ReplayOptions(speed=600, households=2, start="now"),
        clock=clock,
        sleep=clock.sleep,
        on_progress=lambda r: progress.append(r.fraction),
    )
    minutes = len(two_days)
    # GIVEN speed 600 and a 1 s flush: one window of 10 simulated minutes per wall second
    assert report.windows == minutes // 10
    assert sum(clock.sleeps) == pytest.approx(minutes * 60 / 600)
    assert report.max_lag_s == 0
    sim_start = datetime_to_us(report.simulated_start)
    for wall, records in publisher.calls:
        sim_now = sim_start + (wall - WALL_START) * 600 * 1_000_000
        for record in records:
            batch = decode_record(record.data)
            assert len(batch) <= 10  # one record per household per flush
            assert batch.timestamps_us.max() + MINUTE_US <= sim_now + 1  # elapsed minutes only
    # the simulated clock ran far ahead of the wall clock, and validation used it
    last = max(decode_record(r.data).timestamps_us.max() for _, rs in publisher.calls for r in rs)
    assert last > datetime_to_us(dt.datetime.fromtimestamp(clock.now, dt.UTC)) + 3600 * 10**6
    assert report.rejected == 0
    assert report.readings_published == 2 * two_days.complete
    assert progress == sorted(progress)
    assert progress[-1] == 1.0


def test_replay_series_slow_publisher_catches_up_with_bounded_windows(
    two_days: UciSeries,
) -> None:
    clock = FakeClock()
    publisher = ClockedPublisher(clock, cost_s=5.0)  # each publish takes 5 wall seconds
    report = replay_series(
        two_days,
        publisher,
        ReplayOptions(speed=600, households=2, start="original", readings_per_record=30),
        clock=clock,
        sleep=clock.sleep,
    )
    sizes = [len(decode_record(r.data)) for _, records in publisher.calls for r in records]
    assert max(sizes) == 30  # windows grew to catch up, but not past the bound
    assert report.windows < len(two_days) // 10
    assert report.max_lag_s > 0
    assert report.readings_published == 2 * two_days.complete  # nothing skipped
    batches = decoded(publisher.records)
    assert all(len(np.unique(b.timestamps_us)) == len(b) for b in batches.values())


def test_replay_series_quarantines_readings_that_fail_validation(two_days: UciSeries) -> None:
    quarantine = MemoryQuarantine()
    publisher = MemoryPublisher()
    strict = SanityLimits(max_active_power_kw=2.0)
    options = ReplayOptions(speed="max", start="original", limits=strict)
    report = replay_series(two_days, publisher, options, quarantine=quarantine)
    power = two_days.columns["global_active_power_kw"][two_days.present]
    too_high = int((power > 2.0).sum())
    assert too_high > 0
    assert report.rejected == too_high == len(quarantine.items)
    assert report.rejected_by_code == {"implausible_power": too_high}
    assert report.readings_published == two_days.complete - too_high
    item = quarantine.items[0]
    assert item.source == "replay"
    assert item.reason.startswith("implausible_power: global_active_power_kw")
    assert b'"household_id": "uci-0001"' in item.original
    published = decoded(publisher.records)["uci-0001"]
    assert (published.columns["global_active_power_kw"] <= 2.0).all()


def test_replay_series_without_quarantine_keeps_samples_and_counts_all(
    two_days: UciSeries,
) -> None:
    options = ReplayOptions(
        speed="max", start="original", limits=SanityLimits(max_active_power_kw=0.5)
    )
    report = replay_series(two_days, MemoryPublisher(), options)
    assert report.rejected > 100
    assert len(report.rejections) == 100
    assert report.rejections[0].rejection.code == "implausible_power"


def test_run_replay_reads_the_file_and_bounds_memory_per_window() -> None:
    progress: list[SourceReport] = []
    publisher = MemoryPublisher()
    options = ReplayOptions(speed="max", households=4, start="original", max_window_readings=400)
    report = run_replay(APRIL_2007, publisher, options, on_progress=progress.append)
    assert report.source == "replay:uci_household_power_consumption_2007-04.txt.gz"
    assert report.windows == 432  # 43,200 minutes in windows of 100 (400 readings / 4)
    assert report.readings_published == 4 * 39_477
    assert report.rows_malformed == 0
    assert len(progress) == report.windows


def test_replay_fresh_id_prefix_skips_households_with_data():
    from services.ingest.core.replay import fresh_id_prefix, replay_household_ids

    running = {"uci-0001", "uci2-0001"}

    assert fresh_id_prefix(3, lambda h: h in running) == "uci3"
    assert fresh_id_prefix(3, lambda h: False) == "uci"
    assert replay_household_ids(2, "uci3") == ("uci3-0001", "uci3-0002")
    assert plan_replay(2, minutes=1440, prefix="uci3").household_ids == ("uci3-0001", "uci3-0002")
