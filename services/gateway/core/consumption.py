"""Consumption in the query store: one coarse item per household and UTC day.

Why a minute array per household-day: the API answers minute, hour and day queries, and
the store must be rebuilt idempotently from an at-least-once stream. Keeping the mean
power of every minute of the day (1,440 floats, ``NaN`` = no reading) makes a merge a
keyed overwrite: re-applying a redelivered record writes the same values to the same
minutes, so sums can never double. Hour and day aggregates (kWh, mean/min/max kW,
minutes covered) are derived from the array when read; at 1,440 values that costs
microseconds and keeps a single source of truth. The array is stored zlib-compressed
(float64, so sums match the archive's to the last digit); a full UCI day is ~10 KB.

Power comes from ``global_active_power_kw`` when sent, else from ``energy_kwh`` over
``interval_s`` (London half-hours); a reading covers the minutes of ``[t, t + interval)``
(one minute without ``interval_s``), the convention of the archive's daily summaries.
Within a batch, and across batches, the last reading of a minute wins (a correction).

Example:
    >>> import numpy as np
    >>> from shared.batch import ReadingBatch
    >>> batch = ReadingBatch("MAC000002", np.array([0]), {"energy_kwh": np.array([0.5]),
    ...     "interval_s": np.array([1800.0])})
    >>> (key, update), = minute_updates(batch).items()
    >>> key.day.isoformat(), len(update.minutes), float(update.kw[0])
    ('1970-01-01', 30, 1.0)
    >>> day, changed = merge_minutes(None, update)
    >>> changed, round(day_energy_kwh(day), 6)
    (True, 0.5)
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from shared.batch import ReadingBatch

__all__ = [
    "MINUTES_PER_DAY",
    "MINUTE_US",
    "AggregatePoint",
    "DayKey",
    "MinuteUpdate",
    "Resolution",
    "aggregate",
    "combine_updates",
    "day_energy_kwh",
    "decode_minutes",
    "empty_day",
    "encode_minutes",
    "merge_minutes",
    "minute_updates",
]

MINUTE_US: Final = 60_000_000
MINUTES_PER_DAY: Final = 1440
DAY_US: Final = MINUTE_US * MINUTES_PER_DAY
_MAX_INTERVAL_MINUTES: Final = MINUTES_PER_DAY  # a reading never covers more than a day
_EPOCH_DAY: Final = dt.date(1970, 1, 1)
_ENCODED_BYTES: Final = MINUTES_PER_DAY * 8

Resolution = Literal["minute", "hour", "day"]
_MINUTES_PER: Final[Mapping[str, int]] = {"minute": 1, "hour": 60, "day": MINUTES_PER_DAY}

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, order=True)
class DayKey:
    """One query-store consumption item: a household and a UTC day."""

    household_id: str
    day: dt.date


@dataclass(frozen=True, eq=False)
class MinuteUpdate:
    """New mean power (kW) of some minutes of one day: ``minutes`` sorted and unique."""

    minutes: IntArray
    kw: FloatArray

    def __len__(self) -> int:
        return len(self.minutes)


def _power_and_minutes(batch: ReadingBatch) -> tuple[FloatArray, IntArray, IntArray]:
    """Power per row (kW), first minute since the epoch and minutes covered, usable rows only."""
    cols = batch.columns
    interval = cols["interval_s"]
    with np.errstate(divide="ignore", invalid="ignore"):
        from_energy = cols["energy_kwh"] * 3600.0 / interval
    sent = cols["global_active_power_kw"]
    power = np.where(np.isnan(sent), from_energy, sent)
    span = np.where(np.isnan(interval), 60.0, interval)
    usable = np.isfinite(power) & np.isfinite(span) & (span > 0)
    start = np.floor_divide(batch.timestamps_us[usable], MINUTE_US)
    count = np.clip(np.ceil(span[usable] / 60.0), 1, _MAX_INTERVAL_MINUTES).astype(np.int64)
    return power[usable], start, count


def minute_updates(batch: ReadingBatch) -> dict[DayKey, MinuteUpdate]:
    """A household's readings as per-minute power, grouped by UTC day (last reading wins)."""
    power, start, count = _power_and_minutes(batch)
    if not len(power):
        return {}
    # Expand each reading over the minutes it covers, in arrival order.
    offsets = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    minutes = np.repeat(start, count) + offsets
    values = np.repeat(power, count)
    # Last occurrence wins: unique over the reversed arrays keeps the last copy.
    unique, first_in_reversed = np.unique(minutes[::-1], return_index=True)
    values = values[::-1][first_in_reversed]
    days = np.floor_divide(unique, MINUTES_PER_DAY)
    updates: dict[DayKey, MinuteUpdate] = {}
    bounds = np.flatnonzero(np.diff(days)) + 1
    for day_minutes, day_values in zip(
        np.split(unique, bounds), np.split(values, bounds), strict=True
    ):
        day = int(day_minutes[0] // MINUTES_PER_DAY)
        key = DayKey(batch.household_id, _EPOCH_DAY + dt.timedelta(days=day))
        updates[key] = MinuteUpdate(
            (day_minutes - day * MINUTES_PER_DAY).astype(np.int64), day_values.astype(np.float64)
        )
    return updates


def combine_updates(updates: Sequence[MinuteUpdate]) -> MinuteUpdate:
    """Several updates of one day as one, in the given (arrival) order: the last one wins."""
    if len(updates) == 1:
        return updates[0]
    minutes = np.concatenate([u.minutes for u in updates])
    kw = np.concatenate([u.kw for u in updates])
    unique, first_in_reversed = np.unique(minutes[::-1], return_index=True)
    return MinuteUpdate(unique.astype(np.int64), kw[::-1][first_in_reversed])


def empty_day() -> FloatArray:
    """A day with no reading yet."""
    return np.full(MINUTES_PER_DAY, np.nan)


def merge_minutes(stored: FloatArray | None, update: MinuteUpdate) -> tuple[FloatArray, bool]:
    """The day with ``update`` applied, and whether anything changed (a redelivery: no)."""
    day = empty_day() if stored is None else stored.copy()
    before = day[update.minutes]
    same = (before == update.kw) | (np.isnan(before) & np.isnan(update.kw))
    if same.all() and stored is not None:
        return day, False
    day[update.minutes] = update.kw
    return day, True


def encode_minutes(day: FloatArray) -> bytes:
    """The stored form: float64 little-endian, zlib (NaN runs of a partial day compress)."""
    return zlib.compress(np.asarray(day, dtype="<f8").tobytes(), 6)


def decode_minutes(data: bytes) -> FloatArray:
    """Inverse of :func:`encode_minutes`; ``ValueError`` for anything else."""
    try:
        raw = zlib.decompress(data)
    except zlib.error as error:
        raise ValueError(f"stored minutes are not zlib data: {error}") from error
    if len(raw) != _ENCODED_BYTES:
        raise ValueError(f"stored minutes hold {len(raw)} bytes, expected {_ENCODED_BYTES}")
    return np.frombuffer(raw, dtype="<f8").astype(np.float64)


def day_energy_kwh(day: FloatArray) -> float:
    """kWh of the covered minutes of a day."""
    return float(np.nansum(day) / 60.0)


@dataclass(frozen=True)
class AggregatePoint:
    """One step of a consumption series: the covered minutes of ``[start, start + step)``."""

    start: dt.datetime
    kwh: float
    mean_kw: float
    min_kw: float
    max_kw: float
    minutes: int


def aggregate(
    days: Mapping[dt.date, FloatArray],
    *,
    start: dt.datetime,
    end: dt.datetime,
    resolution: Resolution,
) -> list[AggregatePoint]:
    """The covered steps of ``[start, end)`` at ``resolution`` (UTC-aligned), in time order.

    A step with no reading is left out (gaps are shown as gaps, never as zero). At
    ``minute`` resolution every point is one minute (kWh = kW / 60).
    """
    if not days:
        return []
    ordered: Sequence[dt.date] = sorted(days)
    first = ordered[0]
    span = (ordered[-1] - first).days + 1
    series = np.full(span * MINUTES_PER_DAY, np.nan)
    for day in ordered:
        offset = (day - first).days * MINUTES_PER_DAY
        series[offset : offset + MINUTES_PER_DAY] = days[day]
    origin = dt.datetime(first.year, first.month, first.day, tzinfo=dt.UTC)
    lo = max(0, _minutes_between(origin, start, ceil=True))
    hi = min(len(series), _minutes_between(origin, end, ceil=True))
    if lo >= hi:
        return []
    step = _MINUTES_PER[resolution]
    index = np.arange(lo, hi)
    values = series[lo:hi]
    present = ~np.isnan(values)
    index, values = index[present], values[present]
    if not len(values):
        return []
    groups = index // step
    bounds = np.flatnonzero(np.diff(groups)) + 1
    points = []
    for group, chunk in zip(groups[np.r_[0, bounds]], np.split(values, bounds), strict=True):
        points.append(
            AggregatePoint(
                start=origin + dt.timedelta(minutes=int(group) * step),
                kwh=float(chunk.sum() / 60.0),
                mean_kw=float(chunk.mean()),
                min_kw=float(chunk.min()),
                max_kw=float(chunk.max()),
                minutes=len(chunk),
            )
        )
    return points


def _minutes_between(origin: dt.datetime, moment: dt.datetime, *, ceil: bool) -> int:
    """Minutes from ``origin`` to ``moment``, rounded up: minute ``m`` is in ``[start, end)``
    exactly when ``ceil(start) <= m < ceil(end)``."""
    delta = moment - origin
    minutes, rest = divmod(delta, dt.timedelta(minutes=1))
    return int(minutes) + (1 if ceil and rest else 0)
