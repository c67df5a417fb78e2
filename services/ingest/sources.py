"""Drivers of ingest's live sources: load the real data, pace, validate, publish.

The thin side of ``core.replay`` and ``core.fleet``: this module reads files, owns the
(injected) clock and sleep, and writes through the injected ``StreamPublisher`` (and an
optional ``QuarantineSink``). Every window goes the same way: generate the fleet's
readings, validate them in one vectorised pass, aggregate each household's readings
into records (``shared.publishing.stream_records``), publish, report progress.

The CLI calls :func:`run_replay` (``wattstream replay``) and :func:`load_fleet` +
:func:`run_fleet` (``wattstream simulate``); both return a :class:`SourceReport`.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pandas as pd

from services.ingest.core.fleet import (
    DAY_US,
    HALF_HOUR_US,
    MINUTE_US,
    Fleet,
    FleetModel,
    FleetSlice,
    FleetSources,
    InjectedAnomaly,
    IntradayProfiles,
    LclDaily,
    RejectedReading,
    UciSeries,
    check_slice,
    plan_fleet,
)
from services.ingest.core.replay import (
    DEFAULT_FLUSH_EVERY_S,
    Pacer,
    ReplayStart,
    next_window_end,
    parse_speed,
    plan_replay,
    replay_shift_us,
    replay_window,
    window_step_us,
)
from services.ingest.ports import QuarantineSink
from shared.batch import datetime_to_us, us_to_datetime
from shared.publishing import DEFAULT_READINGS_PER_RECORD, stream_records
from shared.streams.ports import StreamPublisher
from shared.uci import UCI_HOUSEHOLD_ID, UCI_UTC_OFFSET, iter_uci
from shared.validation import DEFAULT_LIMITS, SanityLimits

__all__ = [
    "DEFAULT_MAX_WINDOW_READINGS",
    "LCL_DAILY_DIR",
    "LCL_HALFHOURLY_FILE",
    "LCL_INFO_FILE",
    "REPLAY_DEFAULTS",
    "InjectedAnomaly",
    "ReplayOptions",
    "SourceReport",
    "fleet_start_us",
    "lcl_candidates",
    "load_fleet",
    "load_lcl_daily",
    "load_profiles",
    "load_uci_series",
    "replay_series",
    "run_fleet",
    "run_replay",
]

LCL_INFO_FILE: Final = "lcl_informations_households.csv.gz"
LCL_DAILY_DIR: Final = "lcl_daily_dataset"
LCL_HALFHOURLY_FILE: Final = "lcl_halfhourly_2013_100households.csv.gz"

DEFAULT_MAX_WINDOW_READINGS: Final = 2_000_000
"""Readings generated per window at most: ~9 float64 columns, so ~150 MB of arrays while
a window is validated and encoded, whatever the fleet size or speed."""

MAX_KEPT_REJECTIONS: Final = 100
"""Rejected readings kept in the report when no quarantine sink is given (all counted)."""


@dataclass
class SourceReport:
    """What a replay or simulation did so far; passed to ``on_progress`` after each window.

    ``rows_missing`` counts (household, minute or half-hour) slots without a real reading
    (gaps in the source, reported, never invented); ``rows_malformed`` the source file's
    unreadable lines (once, not per household); ``rejected`` the generated readings that
    failed validation (quarantined, or sampled in ``rejections``). ``lag_s`` is how late
    the last window went out against the simulated clock (0 when keeping up).
    """

    source: str
    households: int
    simulated_start: dt.datetime
    simulated_end: dt.datetime
    simulated_until: dt.datetime
    readings_published: int = 0
    rows_missing: int = 0
    rows_malformed: int = 0
    rejected: int = 0
    rejected_by_code: Counter[str] = field(default_factory=Counter)
    rejections: list[RejectedReading] = field(default_factory=list)
    records: int = 0
    bytes: int = 0
    requests: int = 0
    throttled_entries: int = 0
    windows: int = 0
    lag_s: float = 0.0
    max_lag_s: float = 0.0
    wall_s: float = 0.0

    @property
    def fraction(self) -> float:
        """Share of the simulated range published, 0..1 (for a progress bar)."""
        total = (self.simulated_end - self.simulated_start).total_seconds()
        done = (self.simulated_until - self.simulated_start).total_seconds()
        return 1.0 if total <= 0 else min(1.0, done / total)

    @property
    def readings_per_s(self) -> float:
        """Published readings per wall second so far."""
        return self.readings_published / self.wall_s if self.wall_s > 0 else 0.0


WindowMaker = Callable[[int, int], Iterable[FleetSlice]]


@dataclass(frozen=True)
class _Sink:
    """Where a window's output goes, and how it is framed."""

    publisher: StreamPublisher
    quarantine: QuarantineSink | None
    readings_per_record: int
    limits: SanityLimits


def _publish_window(
    parts: Iterable[FleetSlice], *, now_us: int, sink: _Sink, report: SourceReport, at: dt.datetime
) -> None:
    for part in parts:
        checked = check_slice(part, now_us=now_us, limits=sink.limits)
        records = stream_records(checked.batches, readings_per_record=sink.readings_per_record)
        if records:
            published = sink.publisher.publish(records)
            report.requests += published.requests
            report.throttled_entries += published.throttled_entries
            report.bytes += published.bytes
        report.records += len(records)
        report.readings_published += checked.readings
        report.rows_missing += checked.missing
        if checked.rejected:
            report.rejected += len(checked.rejected)
            report.rejected_by_code.update(r.rejection.code for r in checked.rejected)
            if sink.quarantine is not None:
                sink.quarantine.quarantine(
                    [r.to_quarantined(source=report.source, at=at) for r in checked.rejected]
                )
            else:
                room = MAX_KEPT_REJECTIONS - len(report.rejections)
                report.rejections.extend(checked.rejected[: max(room, 0)])


def _drive(
    make_window: WindowMaker,
    *,
    report: SourceReport,
    sink: _Sink,
    speed: float,
    step_us: int,
    max_step_us: int,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    on_progress: Callable[[SourceReport], None] | None,
) -> SourceReport:
    """The one pacing loop of every source: wait for the simulated clock, then publish.

    Validation's "now" is the simulated clock (unpaced: the window's end), not the wall
    clock: at speed > 1 simulated time runs ahead of the wall clock, so a reading that
    is "now" in the replay is in the wall clock's future and a wall-clock check would
    reject it; with ``start="original"`` everything is years in the wall clock's past
    and the check would be void. Against the simulated clock the future-timestamp rule
    keeps its meaning: nothing is sent before it happened.
    """
    start_us = datetime_to_us(report.simulated_start)
    end_us = datetime_to_us(report.simulated_end)
    max_step_us = max(step_us, max_step_us // step_us * step_us)
    wall_start = clock()
    pacer = Pacer(speed, start_us, wall_start)
    t0 = start_us
    while t0 < end_us:
        sim_now: int | None = None
        if pacer.paced:
            due_wall = pacer.wall_s(min(t0 + step_us, end_us))
            while (wait := due_wall - clock()) > 0:
                sleep(wait)
            sim_now = pacer.sim_us(clock())
        t1 = next_window_end(
            t0,
            start_us=start_us,
            end_us=end_us,
            step_us=step_us,
            max_step_us=max_step_us,
            sim_now_us=sim_now,
        )
        now_us = t1 if sim_now is None else max(sim_now, t1)
        at = dt.datetime.fromtimestamp(clock(), dt.UTC)
        _publish_window(make_window(t0, t1), now_us=now_us, sink=sink, report=report, at=at)
        report.windows += 1
        report.simulated_until = us_to_datetime(t1)
        wall = clock()
        report.wall_s = wall - wall_start
        if pacer.paced:
            report.lag_s = max(0.0, wall - pacer.wall_s(t1))
            report.max_lag_s = max(report.max_lag_s, report.lag_s)
        if on_progress is not None:
            on_progress(report)
        t0 = t1
    return report


def _window_steps(
    speed: float,
    flush_every_s: float,
    *,
    readings_per_minute: float,
    max_window_readings: int,
    max_minutes: int,
) -> tuple[int, int]:
    """``(paced step, largest window)`` in microseconds, both whole minutes."""
    bounded = int(max_window_readings // max(readings_per_minute, 1e-9))
    max_step = max(1, min(max_minutes, bounded)) * MINUTE_US
    step = max_step if math.isinf(speed) else window_step_us(speed, flush_every_s)
    return step, max(step, max_step)


# ---------------------------------------------------------------------------- replay


def load_uci_series(path: Path, *, household_id: str = UCI_HOUSEHOLD_ID) -> UciSeries:
    """Parse a UCI file (``.txt`` or ``.txt.gz``) into the minute grid the replay uses.

    The replay reads *the* UCI file, so it declares the file's own clock (fixed
    UTC+01:00, ``shared.uci.UCI_UTC_OFFSET``), as an upload or a CSV POST must.
    """
    return UciSeries.from_chunks(
        iter_uci(path, household_id=household_id, utc_offset=UCI_UTC_OFFSET)
    )


@dataclass(frozen=True)
class ReplayOptions:
    """How a replay runs: the ``wattstream replay`` flags, defined once for every caller.

    * ``speed``: simulated seconds per wall second (600 = 10 h of data a minute);
      ``0``, ``inf`` or ``"max"`` = as fast as the stream takes it.
    * ``households``: how many meters replay the file (``core.replay.plan_replay``), with
      ``seed`` choosing their offsets and scales.
    * ``start``: ``"now"``, ``"original"`` or an aware datetime (see ``core.replay``).
    * ``id_prefix``: household ids are ``{id_prefix}-0001`` ... (see
      ``core.replay.fresh_id_prefix`` for a prefix no running household has).
    * ``flush_every_s``: wall seconds between flushes when paced; one record per household
      per flush, so the stream gets ``households / flush_every_s`` records/s (keep it
      under 1,000 x shards: ``core.replay.flush_interval_for``). Unpaced, a window is
      ``readings_per_record`` minutes (a day: one full record per household), fewer when
      ``households`` x that would exceed ``max_window_readings``.
    * ``limits``: the validation rules every generated reading must pass.
    """

    speed: float | str = 600.0
    households: int = 1
    start: ReplayStart = "now"
    seed: int = 0
    id_prefix: str = "uci"
    flush_every_s: float = DEFAULT_FLUSH_EVERY_S
    readings_per_record: int = DEFAULT_READINGS_PER_RECORD
    max_window_readings: int = DEFAULT_MAX_WINDOW_READINGS
    limits: SanityLimits = DEFAULT_LIMITS


REPLAY_DEFAULTS: Final = ReplayOptions()


def replay_series(
    series: UciSeries,
    publisher: StreamPublisher,
    options: ReplayOptions = REPLAY_DEFAULTS,
    *,
    quarantine: QuarantineSink | None = None,
    source: str = "replay",
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[[SourceReport], None] | None = None,
) -> SourceReport:
    """Replay an already loaded series (see :func:`run_replay`)."""
    speed = parse_speed(options.speed)
    households = options.households
    plan = plan_replay(households, minutes=len(series), seed=options.seed, prefix=options.id_prefix)
    shift = replay_shift_us(series.start_us, options.start, now_us=math.floor(clock() * 1e6))
    first = series.start_us + shift
    report = SourceReport(
        source=source,
        households=households,
        simulated_start=us_to_datetime(first),
        simulated_end=us_to_datetime(first + len(series) * MINUTE_US),
        simulated_until=us_to_datetime(first),
        rows_malformed=len(series.malformed),
    )
    step, max_step = _window_steps(
        speed,
        options.flush_every_s,
        readings_per_minute=households,
        max_window_readings=options.max_window_readings,
        max_minutes=options.readings_per_record,
    )

    def make_window(t0: int, t1: int) -> list[FleetSlice]:
        k0, k1 = (t0 - first) // MINUTE_US, (t1 - first) // MINUTE_US
        return [replay_window(series, plan, shift_us=shift, k0=k0, k1=k1)]

    sink = _Sink(publisher, quarantine, options.readings_per_record, options.limits)
    return _drive(
        make_window,
        report=report,
        sink=sink,
        speed=speed,
        step_us=step,
        max_step_us=max_step,
        clock=clock,
        sleep=sleep,
        on_progress=on_progress,
    )


def run_replay(
    path: Path,
    publisher: StreamPublisher,
    options: ReplayOptions = REPLAY_DEFAULTS,
    *,
    quarantine: QuarantineSink | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[[SourceReport], None] | None = None,
) -> SourceReport:
    """``wattstream replay``: stream a UCI file as ``options.households`` live meters.

    ``clock`` (epoch seconds) and ``sleep`` are injected: tests pass a fake clock.
    Publishing errors (``PublishError`` after the adapter's retries) propagate: the
    stream is unavailable, and the report up to the failure was sent to ``on_progress``.
    """
    return replay_series(
        load_uci_series(path),
        publisher,
        options,
        quarantine=quarantine,
        source=f"replay:{Path(path).name}",
        clock=clock,
        sleep=sleep,
        on_progress=on_progress,
    )


# ----------------------------------------------------------------------------- fleet


def lcl_candidates(data_dir: Path) -> list[str]:
    """Every London household id of the data set (from the household information file)."""
    info = pd.read_csv(data_dir / LCL_INFO_FILE, usecols=["LCLid"], dtype=str)
    return sorted(info["LCLid"].unique())


def load_lcl_daily(data_dir: Path, ids: Sequence[str]) -> LclDaily:
    """Daily totals of ``ids``, reading only the blocks that hold them."""
    info = pd.read_csv(data_dir / LCL_INFO_FILE, usecols=["LCLid", "file"], dtype=str)
    wanted = set(ids)
    blocks = sorted(set(info.loc[info["LCLid"].isin(wanted), "file"]))
    if not blocks:
        raise ValueError(f"none of {len(wanted)} London ids is in {data_dir / LCL_INFO_FILE}")

    def frames() -> Iterator[pd.DataFrame]:
        for block in blocks:
            frame = pd.read_csv(
                data_dir / LCL_DAILY_DIR / f"{block}.csv.gz",
                usecols=["LCLid", "day", "energy_count", "energy_sum"],
                dtype={"LCLid": str, "day": str, "energy_count": float, "energy_sum": float},
            )
            yield frame[frame["LCLid"].isin(wanted)]

    return LclDaily.from_frames(frames())


def load_profiles(data_dir: Path) -> IntradayProfiles:
    """The real half-hourly intraday shapes (100 London households, 2013)."""
    frame = pd.read_csv(
        data_dir / LCL_HALFHOURLY_FILE, dtype={"LCLid": str, "tstp": str}, skipinitialspace=True
    )
    return IntradayProfiles.from_frame(frame)


def load_fleet(
    households: int,
    *,
    seed: int,
    data_dir: Path | None,
    uci_path: Path | None,
    uci_share: float = 0.2,
    id_prefix: str = "sim",
) -> tuple[Fleet, FleetSources]:
    """Plan a fleet and load exactly the real data it needs.

    London households need ``data_dir`` with the LCL files (information, daily blocks,
    half-hourly profiles); UCI households need ``uci_path``. Without one of them the
    fleet is made of the other kind only.
    """
    has_lcl = data_dir is not None and (data_dir / LCL_INFO_FILE).exists()
    candidates = lcl_candidates(data_dir) if has_lcl and data_dir is not None else []
    fleet = plan_fleet(
        households,
        seed=seed,
        lcl_candidates=candidates,
        with_uci=uci_path is not None,
        uci_share=uci_share,
        id_prefix=id_prefix,
    )
    uci = load_uci_series(uci_path) if uci_path is not None and fleet.is_uci.any() else None
    lcl = profiles = None
    if data_dir is not None and fleet.lcl_ids:
        lcl = load_lcl_daily(data_dir, fleet.lcl_ids)
        profiles = load_profiles(data_dir)
    return fleet, FleetSources(uci=uci, lcl=lcl, profiles=profiles)


def fleet_start_us(start: dt.datetime | str, *, now_s: float) -> int:
    """``"now"`` or an aware datetime, floored to the half-hour grid (UTC)."""
    if start == "now":
        stamp = math.floor(now_s * 1e6)
    elif isinstance(start, dt.datetime) and start.tzinfo is not None:
        stamp = datetime_to_us(start)
    else:
        raise ValueError(f"start must be 'now' or an aware datetime, got {start!r}")
    return stamp // HALF_HOUR_US * HALF_HOUR_US


def run_fleet(
    fleet: Fleet,
    sources: FleetSources,
    publisher: StreamPublisher,
    *,
    start: dt.datetime | str = "now",
    days: float = 1.0,
    speed: float | str = "max",
    noise_sigma: float = 0.2,
    flush_every_s: float = DEFAULT_FLUSH_EVERY_S,
    readings_per_record: int = DEFAULT_READINGS_PER_RECORD,
    max_window_readings: int = DEFAULT_MAX_WINDOW_READINGS,
    limits: SanityLimits = DEFAULT_LIMITS,
    quarantine: QuarantineSink | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[[SourceReport], None] | None = None,
    anomaly: InjectedAnomaly | None = None,
    max_window_minutes: int = 1440,
) -> SourceReport:
    """``wattstream simulate``: publish ``days`` of the fleet from ``start`` (half-hour grid).

    Same pacing, validation and publishing as :func:`run_replay`; unpaced by default,
    where a window is at most a day and at most ``max_window_readings`` readings.
    ``anomaly`` (the demo's) adds a labelled deviation to one household's readings;
    ``max_window_minutes`` bounds a window further (``run --once`` steps hour by hour).
    """
    speed = parse_speed(speed)
    if days <= 0:
        raise ValueError("days must be positive")
    first = fleet_start_us(start, now_s=clock())
    end = first + round(days * DAY_US) // MINUTE_US * MINUTE_US
    model = FleetModel(fleet, sources, noise_sigma=noise_sigma)
    report = SourceReport(
        source=f"simulate:seed={fleet.seed}",
        households=len(fleet),
        simulated_start=us_to_datetime(first),
        simulated_end=us_to_datetime(end),
        simulated_until=us_to_datetime(first),
        rows_malformed=len(sources.uci.malformed) if sources.uci is not None else 0,
    )
    step, max_step = _window_steps(
        speed,
        flush_every_s,
        readings_per_minute=model.readings_per_day() / 1440,
        max_window_readings=max_window_readings,
        max_minutes=max_window_minutes,
    )
    sink = _Sink(publisher, quarantine, readings_per_record, limits)

    def make_window(t0: int, t1: int) -> list[FleetSlice]:
        parts = model.window(t0, t1)
        return [anomaly.apply(part) for part in parts] if anomaly is not None else parts

    return _drive(
        make_window,
        report=report,
        sink=sink,
        speed=speed,
        step_us=step,
        max_step_us=max_step,
        clock=clock,
        sleep=sleep,
        on_progress=on_progress,
    )
