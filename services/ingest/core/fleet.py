"""A fleet of simulated households built from real meter data, generated as time slices.

Why: the services must be exercised with thousands of households, and only two real
sources exist: one French house measured every minute (UCI) and ~5,500 London houses with
daily totals (Low Carbon London, ``lcl_daily_dataset``) plus half-hourly readings of 100
of them (2013). A simulated household is a *real* series re-used, never a synthetic curve:

* **UCI households** replay the UCI house's minutes (power, voltage, sub-meters) from a
  seeded day offset, scaled by a seeded factor in ``[0.75, 1.2]`` (voltage is not
  scaled). The factor stays below 1.25 because the real sub-meters exceed the minute's
  energy by up to 2.4 Wh, and 2.4 x 1.25 = 3 Wh is the validation tolerance.
* **LCL households** take a real London household's daily kWh (``energy_sum``) and spread
  each day over 48 half-hours with a real London intraday profile (a day of one of the
  100 half-hourly households) times seeded log-normal noise, renormalised: **the simulated
  half-hours of a day sum to the source ``energy_sum`` exactly** (up to float rounding).
  They send energy only (``energy_kwh`` + ``interval_s = 1800``), like the real meters.

Calendar mapping: a simulated date maps to a source date by a cycle of whole 52-week
years (or whole weeks for short sources) over the source household's own span, plus a
seeded offset of whole weeks, so the weekday is kept and the season drifts by at most a
few weeks. The fleet's clock is UTC without daylight saving (like the UCI file's clock):
a household's "local" time of day is the UTC time of day. Source days that are missing
or incomplete (``energy_count != 48``) stay missing: they are reported, never invented.

Scaling: everything is numpy over ``(households x times)`` matrices of one time window at
a time, so memory is bounded by the window, not by the fleet's history, and 10,000
households cost array operations, not Python loops per reading. The random draws are
keyed by ``(seed, simulated day)``, so readings do not depend on how time is sliced:
same seed, same fleet, same readings.

A reading is generated in the window in which its interval *ends* (a minute stamped
``t`` belongs to ``(t0, t1]`` when ``t + 60 s`` does): a live source cannot send a reading
whose interval has not elapsed yet.

This module is pure: sources arrive as arrays or pandas frames, loaded by the driver
(``services.ingest.sources``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from shared.batch import ReadingBatch, us_to_datetime
from shared.schema import Quarantined
from shared.uci import UCI_COLUMNS, UCI_UTC_OFFSET, UciChunk
from shared.validation import DEFAULT_LIMITS, Rejection, SanityLimits, sanity_mask

__all__ = [
    "DAY_US",
    "HALF_HOUR_US",
    "MINUTE_US",
    "SCALED_UCI_COLUMNS",
    "CheckedSlice",
    "Fleet",
    "FleetModel",
    "FleetSlice",
    "FleetSources",
    "InjectedAnomaly",
    "IntradayProfiles",
    "LclDaily",
    "RejectedReading",
    "UciSeries",
    "check_slice",
    "plan_fleet",
    "simulate_fleet",
]

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
T = TypeVar("T")

MINUTE_US: Final = 60_000_000
HALF_HOUR_US: Final = 30 * MINUTE_US
DAY_US: Final = 86_400_000_000
MINUTES_PER_DAY: Final = 1440
HALF_HOURS_PER_DAY: Final = 48
WEEKS_PER_YEAR: Final = 52
DAYS_PER_CYCLE_YEAR: Final = 7 * WEEKS_PER_YEAR  # 364: keeps the weekday

SCALED_UCI_COLUMNS: Final = (
    "global_active_power_kw",
    "global_reactive_power_kw",
    "global_intensity_a",
    "sub_metering_1_wh",
    "sub_metering_2_wh",
    "sub_metering_3_wh",
)
"""Extensive quantities a household scale factor multiplies (voltage is not one)."""

UCI_SCALE_RANGE: Final = (0.75, 1.2)
"""Below 1.25 so that the real sub-meter excess (<= 2.4 Wh) stays within the 3 Wh limit."""

_EPOCH_DATE: Final = dt.date(1970, 1, 1)

#: Streams of random draws, so that the plan and the noise never share a sequence.
_NOISE_STREAM: Final = 0x4E4F495345


# ------------------------------------------------------------------------- fleet slices


@dataclass(frozen=True, eq=False)
class FleetSlice:
    """Readings of many households over one time window, as ``(households, times)`` matrices.

    Every household of a slice shares ``timestamps_us``; ``present[h, t]`` is False where
    household ``h`` has no reading at ``t`` (a gap in the real source, never filled in).
    ``columns`` holds only the measurement fields this kind of meter sends.
    """

    household_ids: tuple[str, ...]
    timestamps_us: Int64Array
    columns: Mapping[str, Float64Array]
    present: BoolArray

    def __post_init__(self) -> None:
        shape = (len(self.household_ids), len(self.timestamps_us))
        if self.present.shape != shape:
            raise ValueError(f"present has shape {self.present.shape}, expected {shape}")
        for name, column in self.columns.items():
            if column.shape != shape:
                raise ValueError(f"column {name} has shape {column.shape}, expected {shape}")

    @property
    def readings(self) -> int:
        """Readings present in the slice."""
        return int(np.count_nonzero(self.present))

    @property
    def missing(self) -> int:
        """(household, time) cells without a reading."""
        return self.present.size - self.readings

    def batches(self) -> list[ReadingBatch]:
        """One batch per household with readings, unvalidated (see :func:`check_slice`)."""
        return _split(self, np.flatnonzero(self.present.ravel()), None)


@dataclass(frozen=True)
class InjectedAnomaly:
    """A labelled demo anomaly: ``extra_kw`` added to one household's energy readings
    over ``[start_us, end_us)`` (interval starts), so the detector has something real to flag.

    Only energy meters (``energy_kwh`` readings) are changed; everything else passes as is.
    """

    household_id: str
    start_us: int
    end_us: int
    extra_kw: float

    def apply(self, slice_: FleetSlice) -> FleetSlice:
        """``slice_`` with the extra energy added where the household and times match."""
        if self.household_id not in slice_.household_ids or "energy_kwh" not in slice_.columns:
            return slice_
        row = slice_.household_ids.index(self.household_id)
        stamps = slice_.timestamps_us
        hit = (stamps >= self.start_us) & (stamps < self.end_us) & slice_.present[row]
        if not hit.any():
            return slice_
        energy = slice_.columns["energy_kwh"].copy()
        hours = slice_.columns["interval_s"][row, hit] / 3600.0
        energy[row, hit] += self.extra_kw * hours
        return FleetSlice(
            slice_.household_ids, stamps, {**slice_.columns, "energy_kwh": energy}, slice_.present
        )


def _split(slice_: FleetSlice, rows: Int64Array, keep: BoolArray | None) -> list[ReadingBatch]:
    """Per-household batches of the flat cells ``rows`` (household-major), ``keep`` ones."""
    if keep is not None:
        rows = rows[keep]
    if not len(rows):
        return []
    n_times = len(slice_.timestamps_us)
    households = rows // n_times
    stamps = slice_.timestamps_us[rows % n_times]
    columns = {name: column.ravel()[rows] for name, column in slice_.columns.items()}
    bounds = np.concatenate(
        [[0], np.cumsum(np.bincount(households, minlength=len(slice_.household_ids)))]
    )
    return [
        ReadingBatch(
            household_id,
            stamps[start:stop],
            {name: column[start:stop] for name, column in columns.items()},
        )
        for household_id, start, stop in zip(
            slice_.household_ids, bounds[:-1].tolist(), bounds[1:].tolist(), strict=True
        )
        if stop > start
    ]


@dataclass(frozen=True)
class RejectedReading:
    """A generated reading that failed the sanity rules, with the values that failed."""

    household_id: str
    timestamp_us: int
    values: Mapping[str, float]
    rejection: Rejection

    def original(self) -> bytes:
        """The reading as the JSON document a meter would have sent (for quarantine)."""
        document = {
            "household_id": self.household_id,
            "timestamp": us_to_datetime(self.timestamp_us).isoformat().replace("+00:00", "Z"),
            **{name: value for name, value in self.values.items() if not math.isnan(value)},
        }
        return json.dumps(document).encode()

    def to_quarantined(self, *, source: str, at: dt.datetime) -> Quarantined:
        """The quarantine item: original bytes, the rejection's reason, the source."""
        return Quarantined(
            original=self.original(),
            reason=f"{self.rejection.code}: {self.rejection.reason}",
            source=source,
            quarantined_at=at,
        )


@dataclass(frozen=True, eq=False)
class CheckedSlice:
    """A slice after validation: publishable batches, rejected readings, missing cells."""

    batches: list[ReadingBatch]
    rejected: list[RejectedReading]
    missing: int

    @property
    def readings(self) -> int:
        """Readings that passed validation (what will be published)."""
        return sum(len(batch) for batch in self.batches)


def check_slice(
    slice_: FleetSlice, *, now_us: int, limits: SanityLimits = DEFAULT_LIMITS
) -> CheckedSlice:
    """Validate every present reading of the fleet in ONE vectorised ``sanity_mask`` pass.

    The sanity rules look at one row at a time, so the whole window of every household
    is checked as one flat batch (under the first household's id, which the rules never
    read) and split back into per-household batches afterwards: one pass of numpy per
    window instead of one per household. ``now_us`` is the caller's clock (see the
    driver: the replay's simulated clock).
    """
    rows = np.flatnonzero(slice_.present.ravel())
    if not len(rows):
        return CheckedSlice([], [], slice_.missing)
    n_times = len(slice_.timestamps_us)
    flat = ReadingBatch(
        slice_.household_ids[0],
        slice_.timestamps_us[rows % n_times],
        {name: column.ravel()[rows] for name, column in slice_.columns.items()},
    )
    ok, rejections = sanity_mask(flat, now_us=now_us, limits=limits)
    rejected = [
        RejectedReading(
            slice_.household_ids[int(rows[row]) // n_times],
            int(flat.timestamps_us[row]),
            {name: float(flat.columns[name][row]) for name in slice_.columns},
            rejection,
        )
        for row, rejection in rejections
    ]
    batches = _split(slice_, rows, None if not rejections else ok)
    return CheckedSlice(batches, rejected, slice_.missing)


# ------------------------------------------------------------------------------ sources


def _cycle_days(span_days: int) -> int:
    """Days after which a source repeats: whole 52-week years, else whole weeks, else days.

    A multiple of 364 keeps both the weekday and (within ~1 day a year) the season; a
    multiple of 7 keeps the weekday.
    """
    if span_days >= DAYS_PER_CYCLE_YEAR:
        return span_days // DAYS_PER_CYCLE_YEAR * DAYS_PER_CYCLE_YEAR
    if span_days >= 7:
        return span_days // 7 * 7
    return max(span_days, 0)


@dataclass(frozen=True, eq=False)
class UciSeries:
    """The UCI house as a dense minute grid: one row per minute from the first to the last.

    ``present[j]`` is False for a minute with no complete reading (a ``?`` row of the
    file, or a minute the file does not hold). ``malformed`` lists the lines the parser
    could not read and the rows that are off the minute grid or duplicated, as
    ``(line number or -1, reason)``: counted and reported, never used.
    """

    household_id: str
    start_us: int
    columns: Mapping[str, Float64Array]
    present: BoolArray
    malformed: tuple[tuple[int, str], ...] = ()
    utc_offset_us: int = UCI_UTC_OFFSET // dt.timedelta(microseconds=1)

    def __len__(self) -> int:
        return len(self.present)

    @property
    def complete(self) -> int:
        """Minutes with a complete reading."""
        return int(np.count_nonzero(self.present))

    @classmethod
    def from_chunks(cls, chunks: Iterable[UciChunk]) -> UciSeries:
        """Build the grid from parsed chunks (``shared.uci.iter_uci``), one chunk at a time."""
        kept: list[UciChunk] = []
        malformed: list[tuple[int, str]] = []
        low, high = None, None
        for chunk in chunks:
            kept.append(chunk)
            malformed.extend((line, reason) for line, _, reason in chunk.malformed)
            for stamp in (chunk.first_timestamp_us, chunk.last_timestamp_us):
                if stamp is not None:
                    low = stamp if low is None else min(low, stamp)
                    high = stamp if high is None else max(high, stamp)
        if low is None or high is None:
            raise ValueError("the UCI source holds no timestamps")
        n = (high - low) // MINUTE_US + 1
        columns = {name: np.full(n, np.nan) for name in UCI_COLUMNS.values()}
        taken = np.zeros(n, dtype=bool)
        for chunk in kept:
            stamps = chunk.readings.timestamps_us
            offsets = stamps - low
            on_grid = offsets % MINUTE_US == 0
            index = offsets // MINUTE_US
            # A minute seen before (a duplicate) keeps its first row; later ones are reported.
            grid_rows = np.flatnonzero(on_grid)
            first = np.zeros(len(stamps), dtype=bool)
            first[grid_rows[np.unique(index[grid_rows], return_index=True)[1]]] = True
            keep = on_grid & first & ~taken[index]
            malformed.extend(
                (-1, f"timestamp {us_to_datetime(int(s)).isoformat()} is off the minute grid")
                for s in stamps[~on_grid]
            )
            malformed.extend(
                (-1, f"duplicate minute {us_to_datetime(int(s)).isoformat()}")
                for s in stamps[on_grid & ~keep]
            )
            taken[index[keep]] = True
            for name, column in columns.items():
                column[index[keep]] = chunk.readings.columns[name][keep]
        household_id = kept[0].readings.household_id
        return cls(household_id, low, columns, taken, tuple(malformed))

    def day_layout(self) -> tuple[int, int, int]:
        """``(first local day since epoch, its grid row, cycle days)`` of the full days.

        The house's local clock (fixed UTC+01:00, see ``shared.uci``) defines its days, so
        a simulated 07:00 takes the house's 07:00.
        """
        local_start = self.start_us + self.utc_offset_us
        first_day = -(-local_start // DAY_US)  # ceil: the first local midnight in the grid
        first_row = (first_day * DAY_US - self.utc_offset_us - self.start_us) // MINUTE_US
        full_days = (len(self) - first_row) // MINUTES_PER_DAY
        return first_day, first_row, _cycle_days(full_days)


@dataclass(frozen=True, eq=False)
class LclDaily:
    """Daily kWh of London households: ``energy[i, d]`` for ``ids[i]`` on ``first_day + d``.

    Only complete days (48 half-hours) are kept; every other day is ``NaN`` (missing).
    ``first_day`` is in days since the Unix epoch. Per household, ``span_start`` is the
    day index of its first complete day and ``cycle`` the repeat length of its span (see
    :func:`_cycle_days`; 0 = no complete day at all).
    """

    ids: tuple[str, ...]
    first_day: int
    energy: Float64Array
    span_start: Int64Array = field(init=False)
    cycle: Int64Array = field(init=False)

    def __post_init__(self) -> None:
        complete = ~np.isnan(self.energy)
        has_any = complete.any(axis=1)
        n_days = self.energy.shape[1]
        first = np.where(has_any, complete.argmax(axis=1), 0)
        last = np.where(has_any, n_days - 1 - complete[:, ::-1].argmax(axis=1), -1)
        span = np.where(has_any, last - first + 1, 0)
        object.__setattr__(self, "span_start", first.astype(np.int64))
        object.__setattr__(
            self, "cycle", np.array([_cycle_days(int(s)) for s in span], dtype=np.int64)
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> LclDaily:
        """From ``lcl_daily_dataset`` rows (columns ``LCLid, day, energy_count, energy_sum``)."""
        return cls.from_frames([frame])

    @classmethod
    def from_frames(cls, frames: Iterable[pd.DataFrame]) -> LclDaily:
        """Like :meth:`from_frame` over several frames (blocks), each reduced to arrays first.

        Only complete days are kept (``energy_count == 48`` and a finite ``energy_sum``).
        """
        ids: set[str] = set()
        parts: list[tuple[npt.NDArray[np.object_], Int64Array, Float64Array]] = []
        for frame in frames:
            ids.update(frame["LCLid"].unique())
            sums = frame["energy_sum"].to_numpy(np.float64)
            complete = (frame["energy_count"].to_numpy(np.float64) == HALF_HOURS_PER_DAY) & (
                np.isfinite(sums)
            )
            days = pd.to_datetime(frame["day"][complete], format="%Y-%m-%d")
            parts.append(
                (
                    frame["LCLid"].to_numpy(object)[complete],
                    days.to_numpy("datetime64[D]").astype(np.int64),
                    sums[complete],
                )
            )
        ordered = tuple(sorted(ids))
        all_days = np.concatenate([days for _, days, _ in parts]) if parts else np.empty(0, int)
        if not len(all_days):
            return cls(ordered, 0, np.full((len(ordered), 0), np.nan))
        first = int(all_days.min())
        energy = np.full((len(ordered), int(all_days.max()) - first + 1), np.nan)
        index = pd.Index(ordered)
        for lcl_ids, days, sums in parts:
            energy[index.get_indexer(lcl_ids), days - first] = sums
        return cls(ordered, first, energy)

    def daily_kwh(self, lcl_id: str, day: dt.date) -> float:
        """The source ``energy_sum`` of one household and date (``NaN`` if missing)."""
        index = (day - _EPOCH_DATE).days - self.first_day
        if lcl_id not in self.ids or not 0 <= index < self.energy.shape[1]:
            return math.nan
        return float(self.energy[self.ids.index(lcl_id), index])


@dataclass(frozen=True, eq=False)
class IntradayProfiles:
    """Real half-hourly shapes of London days: ``shapes[p, d]`` sums to 1 over 48 slots.

    Built from the 100-household half-hourly file of 2013: profile ``p`` is one household,
    ``d`` a day of its 52-week year from ``first_day`` (days since epoch). A day that is
    not complete in the source takes that household's mean shape of the same weekday
    (a *shape*, not a reading: the energy always comes from a real daily total).
    """

    ids: tuple[str, ...]
    first_day: int
    shapes: Float64Array

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> IntradayProfiles:
        """From rows ``LCLid, tstp, energy(kWh/hh)`` (``tstp`` = ``YYYY-MM-DD hh:mm:ss``)."""
        value_column = next(c for c in frame.columns if c.startswith("energy"))
        stamps = pd.to_datetime(frame["tstp"], format="%Y-%m-%d %H:%M:%S").to_numpy("datetime64[m]")
        minutes = stamps.astype(np.int64)
        days = minutes // MINUTES_PER_DAY
        first_day = int(days.min())
        slots = (minutes % MINUTES_PER_DAY) // 30
        ids = tuple(sorted(frame["LCLid"].unique()))
        rows = pd.Index(ids).get_indexer(frame["LCLid"])
        values = pd.to_numeric(frame[value_column], errors="coerce").to_numpy(np.float64)
        day_index = days - first_day
        inside = day_index < DAYS_PER_CYCLE_YEAR
        grid = np.full((len(ids), DAYS_PER_CYCLE_YEAR, HALF_HOURS_PER_DAY), np.nan)
        grid[rows[inside], day_index[inside], slots[inside]] = values[inside]
        totals = grid.sum(axis=2)  # NaN when a slot is missing
        complete = np.isfinite(totals) & (totals > 0) & ~(grid < 0).any(axis=2)
        shapes = np.where(complete[:, :, None], grid / np.where(complete, totals, 1)[:, :, None], 0)
        weekday = np.arange(DAYS_PER_CYCLE_YEAR) % 7
        usable = []
        for p in range(len(ids)):
            if not complete[p].any():
                continue  # a household without one complete day gives no shape
            fallback = shapes[p, complete[p]].mean(axis=0)
            for w in range(7):
                same = complete[p] & (weekday == w)
                mean = shapes[p, same].mean(axis=0) if same.any() else fallback
                fill = ~complete[p] & (weekday == w)
                shapes[p, fill] = mean
            usable.append(p)
        if not usable:
            raise ValueError("no complete day in the half-hourly profiles")
        return cls(tuple(ids[p] for p in usable), first_day, shapes[usable])


@dataclass(frozen=True, eq=False)
class FleetSources:
    """The real data a fleet draws from; either kind may be absent."""

    uci: UciSeries | None = None
    lcl: LclDaily | None = None
    profiles: IntradayProfiles | None = None


# --------------------------------------------------------------------------------- plan


@dataclass(frozen=True, eq=False)
class Fleet:
    """Who the simulated households are (arrays, one entry per household).

    ``is_uci[i]`` picks the kind; ``lcl_index[i]`` indexes ``lcl_ids`` (-1 for UCI);
    ``day_offset[i]`` is whole weeks added to the calendar mapping (in days);
    ``scale[i]`` multiplies UCI power (1 for LCL, whose daily sums are kept);
    ``profile_key[i]`` picks an intraday profile (modulo the number available).
    """

    seed: int
    household_ids: tuple[str, ...]
    is_uci: BoolArray
    lcl_ids: tuple[str, ...]
    lcl_index: Int64Array
    day_offset: Int64Array
    scale: Float64Array
    profile_key: Int64Array

    def __len__(self) -> int:
        return len(self.household_ids)

    def source_of(self, household_id: str) -> str:
        """The real household a simulated one is built from (for tests and displays)."""
        i = self.household_ids.index(household_id)
        return "uci" if self.is_uci[i] else self.lcl_ids[self.lcl_index[i]]


def plan_fleet(
    households: int,
    *,
    seed: int,
    lcl_candidates: Sequence[str] = (),
    with_uci: bool = True,
    uci_share: float = 0.2,
    id_prefix: str = "sim",
) -> Fleet:
    """Draw a reproducible fleet: same arguments, same fleet.

    ``uci_share`` of the households (rounded) replay the UCI house, the others a London
    household drawn from ``lcl_candidates`` without replacement while there are enough
    (then the draw starts over, and the day offsets and noise tell the copies apart).
    Day offsets are ``364 * y + 7 * k`` days (``y`` in 0..2, ``k`` in -4..4): another
    year of the source and up to four weeks earlier or later, the weekday kept.
    """
    if households < 1:
        raise ValueError("households must be >= 1")
    if not 0 <= uci_share <= 1:
        raise ValueError("uci_share must be within [0, 1]")
    candidates = sorted(set(lcl_candidates))
    if not candidates and not with_uci:
        raise ValueError("a fleet needs the UCI house or London candidates")
    rng = np.random.default_rng(seed)
    n_uci = households if not candidates else 0 if not with_uci else round(households * uci_share)
    is_uci = np.zeros(households, dtype=bool)
    is_uci[rng.choice(households, size=n_uci, replace=False)] = True
    n_lcl = households - n_uci
    draws = [rng.permutation(len(candidates)) for _ in range(-(-n_lcl // max(len(candidates), 1)))]
    picked = np.concatenate(draws)[:n_lcl] if draws else np.empty(0, np.int64)
    used = np.unique(picked)
    lcl_index = np.full(households, -1, dtype=np.int64)
    lcl_index[~is_uci] = np.searchsorted(used, picked)
    day_offset = DAYS_PER_CYCLE_YEAR * rng.integers(0, 3, households) + 7 * rng.integers(
        -4, 5, households
    )
    scale = np.where(is_uci, rng.uniform(*UCI_SCALE_RANGE, households), 1.0)
    width = max(5, len(str(households)))
    return Fleet(
        seed=seed,
        household_ids=tuple(f"{id_prefix}-{i + 1:0{width}d}" for i in range(households)),
        is_uci=is_uci,
        lcl_ids=tuple(candidates[i] for i in used),
        lcl_index=lcl_index,
        day_offset=day_offset.astype(np.int64),
        scale=scale,
        profile_key=rng.integers(0, 2**31, households).astype(np.int64),
    )


# ---------------------------------------------------------------------------- generator


def _given(value: T | None, what: str) -> T:
    """``value``, which the fleet's households need (checked once in ``FleetModel``)."""
    if value is None:
        raise ValueError(f"the fleet's sources have no {what}")
    return value


def stamps_ending_in(t0_us: int, t1_us: int, step_us: int) -> Int64Array:
    """Grid stamps ``t`` (multiples of ``step_us``) whose interval ends in ``(t0, t1]``."""
    low = (t0_us - step_us) // step_us * step_us + step_us  # first multiple > t0 - step
    high = (t1_us - step_us) // step_us * step_us  # last multiple <= t1 - step
    return np.arange(low, high + 1, step_us, dtype=np.int64) if high >= low else np.empty(0, int)


class FleetModel:
    """Generates any time window of a planned fleet (deterministic, slice-independent).

    Holds the precomputed calendar mapping and a small cache of London days (a day's 48
    half-hours are drawn once and renormalised as a whole, whatever the window size).
    """

    def __init__(self, fleet: Fleet, sources: FleetSources, *, noise_sigma: float = 0.2) -> None:
        if noise_sigma < 0:
            raise ValueError("noise_sigma must be >= 0")
        self.fleet = fleet
        self.sources = sources
        self.noise_sigma = noise_sigma
        self._uci_rows = np.flatnonzero(fleet.is_uci)
        self._lcl_rows = np.flatnonzero(~fleet.is_uci)
        if len(self._uci_rows) and sources.uci is None:
            raise ValueError("the fleet has UCI households but no UCI series was given")
        if len(self._lcl_rows) and (sources.lcl is None or sources.profiles is None):
            raise ValueError("the fleet has London households but no LCL data or profiles")
        if sources.uci is not None and len(self._uci_rows):
            self._uci_layout = sources.uci.day_layout()
            if self._uci_layout[2] < 1:
                raise ValueError("the UCI series must hold at least one full local day")
        if sources.lcl is not None and len(self._lcl_rows):
            by_id = {lcl_id: i for i, lcl_id in enumerate(sources.lcl.ids)}
            self._lcl_source = np.array(
                [by_id.get(fleet.lcl_ids[i], -1) for i in fleet.lcl_index[self._lcl_rows]],
                dtype=np.int64,
            )
        self._day_cache: dict[int, Float64Array] = {}

    @property
    def uci_household_ids(self) -> tuple[str, ...]:
        return tuple(self.fleet.household_ids[i] for i in self._uci_rows)

    @property
    def lcl_household_ids(self) -> tuple[str, ...]:
        return tuple(self.fleet.household_ids[i] for i in self._lcl_rows)

    def readings_per_day(self) -> float:
        """Readings the whole fleet makes per simulated day (to size windows)."""
        return len(self._uci_rows) * MINUTES_PER_DAY + len(self._lcl_rows) * HALF_HOURS_PER_DAY

    def window(self, t0_us: int, t1_us: int) -> list[FleetSlice]:
        """The readings whose interval ends in ``(t0, t1]``: one slice per kind present."""
        parts = []
        if len(self._uci_rows):
            parts.append(self._uci_window(t0_us, t1_us))
        if len(self._lcl_rows):
            parts.append(self._lcl_window(t0_us, t1_us))
        return [part for part in parts if len(part.timestamps_us)]

    def _uci_window(self, t0_us: int, t1_us: int) -> FleetSlice:
        series = _given(self.sources.uci, "UCI series")
        first_day, first_row, cycle = self._uci_layout
        stamps = stamps_ending_in(t0_us, t1_us, MINUTE_US)
        days = stamps // DAY_US
        minute = (stamps % DAY_US) // MINUTE_US
        offset = self.fleet.day_offset[self._uci_rows]
        source_day = (days[None, :] - first_day + offset[:, None]) % cycle
        rows = first_row + source_day * MINUTES_PER_DAY + minute[None, :]
        scale = self.fleet.scale[self._uci_rows][:, None]
        columns = {
            name: column[rows] * scale if name in SCALED_UCI_COLUMNS else column[rows]
            for name, column in series.columns.items()
        }
        return FleetSlice(self.uci_household_ids, stamps, columns, series.present[rows])

    def _lcl_window(self, t0_us: int, t1_us: int) -> FleetSlice:
        stamps = stamps_ending_in(t0_us, t1_us, HALF_HOUR_US)
        days = stamps // DAY_US
        slots = (stamps % DAY_US) // HALF_HOUR_US
        energy = np.empty((len(self._lcl_rows), len(stamps)))
        for day in np.unique(days).tolist():
            cols = np.flatnonzero(days == day)
            energy[:, cols] = self._lcl_day(day)[:, slots[cols]]
        present = ~np.isnan(energy)
        columns = {"energy_kwh": energy, "interval_s": np.where(present, 1800.0, np.nan)}
        return FleetSlice(self.lcl_household_ids, stamps, columns, present)

    def _lcl_source_days(self, day: int) -> tuple[Int64Array, Int64Array, BoolArray]:
        """Per London household: source row, source day index, and whether it has one."""
        lcl = _given(self.sources.lcl, "London daily data")
        known = self._lcl_source >= 0
        row = np.where(known, self._lcl_source, 0)
        cycle = lcl.cycle[row]
        usable = known & (cycle > 0)
        anchor = lcl.first_day + lcl.span_start[row]
        offset = self.fleet.day_offset[self._lcl_rows]
        index = lcl.span_start[row] + (day - anchor + offset) % np.maximum(cycle, 1)
        return row, np.where(usable, index, 0), usable

    def source_date(self, household_id: str, day: dt.date) -> dt.date | None:
        """The real London date whose ``energy_sum`` a household spreads over ``day``.

        ``None`` for a UCI household or a London one whose source has no complete day.
        """
        where = np.flatnonzero(self._lcl_rows == self.fleet.household_ids.index(household_id))
        if not len(where):
            return None
        lcl = _given(self.sources.lcl, "London daily data")
        _, index, usable = self._lcl_source_days((day - _EPOCH_DATE).days)
        if not usable[where[0]]:
            return None
        return _EPOCH_DATE + dt.timedelta(days=lcl.first_day + int(index[where[0]]))

    def _lcl_day(self, day: int) -> Float64Array:
        """``(london households, 48)`` kWh of one simulated day; NaN rows = missing day."""
        cached = self._day_cache.get(day)
        if cached is not None:
            return cached
        lcl = _given(self.sources.lcl, "London daily data")
        profiles = _given(self.sources.profiles, "intraday profiles")
        row, index, usable = self._lcl_source_days(day)
        daily = np.where(usable, lcl.energy[row, index], np.nan)
        shape_day = (lcl.first_day + index - profiles.first_day) % DAYS_PER_CYCLE_YEAR
        profile = self.fleet.profile_key[self._lcl_rows] % len(profiles.ids)
        shape = profiles.shapes[profile, shape_day]
        if self.noise_sigma:
            rng = np.random.default_rng([self.fleet.seed, _NOISE_STREAM, day & (2**63 - 1)])
            shape = shape * np.exp(self.noise_sigma * rng.standard_normal(shape.shape))
            shape /= shape.sum(axis=1, keepdims=True)
        kwh = daily[:, None] * shape
        if len(self._day_cache) >= 2:  # windows move forward: keep the last days only
            self._day_cache.pop(next(iter(self._day_cache)))
        self._day_cache[day] = kwh
        return kwh


def simulate_fleet(
    fleet: Fleet,
    sources: FleetSources,
    *,
    start_us: int,
    end_us: int,
    window_s: int = 3600,
    noise_sigma: float = 0.2,
) -> Iterator[FleetSlice]:
    """The fleet's readings from ``start_us`` to ``end_us``, window by window, in time order.

    Each window yields one :class:`FleetSlice` per kind of meter (minute power for UCI
    households, half-hourly energy for London ones); ``slice.batches()`` gives the
    per-household ``ReadingBatch`` es. ``start_us`` must be on the half-hour grid so no
    half-hour straddles the start. Memory is one window: ``window_s`` x the fleet.
    """
    if start_us % HALF_HOUR_US:
        raise ValueError("start_us must be a multiple of 30 minutes (UTC)")
    if window_s <= 0 or (window_s * 1_000_000) % MINUTE_US:
        raise ValueError("window_s must be a positive whole number of minutes")
    model = FleetModel(fleet, sources, noise_sigma=noise_sigma)
    step = window_s * 1_000_000
    for t0 in range(start_us, end_us, step):
        yield from model.window(t0, min(t0 + step, end_us))
