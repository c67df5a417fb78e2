"""The archive's pure core: readings -> one sorted, deduplicated table per household-day.

Why this shape: Kinesis delivers at least once (a partial batch failure retries from the
lowest failed sequence number, so the records after it come again; bisection and restarts
replay too). The archive therefore keeps exactly one compacted object per
(household, UTC day) under a key that is a pure function of that partition
(:func:`shared.archive_layout.readings_key`), and rewrites it as read-merge-dedupe-write.
A household lives on one shard and a shard is processed sequentially, so each object has
a single writer. The key layout and the Parquet format are shared with the services that
read the archive (:mod:`shared.archive_layout`, :mod:`shared.archive_parquet`).

Two guards make a replay harmless:

* **stream position**: each object remembers the highest sequence number merged from its
  shard (:class:`StreamPosition`, stored as object metadata by the adapter). A redelivered
  record at or below it is already in the object and is skipped (:func:`unmerged`), so a
  pure redelivery rewrites nothing and the fold "records in sequence order" stays exact.
* **content**: rows are unique by timestamp (:func:`merge_day`). When two copies of a
  timestamp disagree, the **last received wins** (higher sequence number, or later in the
  record): a correction is published after the reading it corrects, the same rule as
  ingest applies within a payload. What it replaced is **reported, never silently
  lost**: the losing copies are returned (``DayMerge.replaced``) and the shell writes
  them under ``conflicts/`` before it rewrites the day. Identical copies are plain
  duplicates. A merge that changes no row reports ``changed=False`` and the object is
  not rewritten (e.g. the same data published twice, or a household that moved to a
  child shard after resharding).

Late and out-of-order readings simply land in their day's object, sorted by time. Days
are UTC days; a reading's energy counts on the day of its timestamp, which marks the
*start* of its interval (a UCI minute average, a London half-hour).

Example:
    >>> import datetime as dt
    >>> import numpy as np
    >>> from shared.batch import datetime_to_us
    >>> day0 = datetime_to_us(dt.datetime(2007, 4, 1, tzinfo=dt.UTC))
    >>> minute = 60_000_000
    >>> first = ReadingBatch("h1", np.array([day0 + minute, day0]),
    ...                      {"global_active_power_kw": np.array([1.2, 0.6])})
    >>> again = ReadingBatch("h1", np.array([day0 + minute]),
    ...                      {"global_active_power_kw": np.array([1.8])})
    >>> merged = merge_day(None, [first, again])
    >>> merged.rows.columns["global_active_power_kw"].tolist(), merged.added, merged.duplicates
    ([0.6, 1.8], 2, 1)
    >>> merged.replaced.columns["global_active_power_kw"].tolist()  # kept under conflicts/
    [1.2]
    >>> s = summarize_day(merged.rows, dt.date(2007, 4, 1))
    >>> round(s.kwh, 4), s.peak_kw, s.coverage * 1440
    (0.04, 1.8, 2.0)
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from shared.batch import ReadingBatch, us_to_datetime
from shared.schema import MEASUREMENT_FIELDS, DailySummary
from shared.validation import DEFAULT_LIMITS

__all__ = [
    "US_PER_DAY",
    "ArchiveStore",
    "DailySummary",
    "DayKey",
    "DayMerge",
    "DayPiece",
    "StoredDay",
    "StreamPosition",
    "group_by_household_day",
    "last_position",
    "merge_day",
    "split_by_day",
    "summarize_day",
    "unmerged",
    "utc_day",
]

US_PER_DAY: Final = 86_400_000_000
_EPOCH_DATE: Final = dt.date(1970, 1, 1)


# --------------------------------------------------------------------------- partitions


class DayKey(NamedTuple):
    """One partition of the archive: a household and a UTC day."""

    household_id: str
    day: dt.date


def utc_day(timestamp_us: int) -> dt.date:
    """The UTC date of a timestamp in microseconds (floor division: exact before 1970 too)."""
    return _EPOCH_DATE + dt.timedelta(days=int(timestamp_us) // US_PER_DAY)


def _day_start_us(day: dt.date) -> int:
    return (day - _EPOCH_DATE).days * US_PER_DAY


def split_by_day(batch: ReadingBatch) -> list[tuple[dt.date, ReadingBatch]]:
    """The rows of each UTC day, days ascending; rows keep their order within a day.

    A time-ordered record (the common case) is split into views, without copying.
    """
    if not len(batch):
        return []
    days = batch.timestamps_us // US_PER_DAY
    if bool(np.all(days[1:] >= days[:-1])):
        bounds = [0, *(np.flatnonzero(np.diff(days)) + 1).tolist(), len(batch)]
        return [
            (utc_day(int(days[start]) * US_PER_DAY), batch.slice(start, stop))
            for start, stop in itertools.pairwise(bounds)
        ]
    distinct, inverse = np.unique(days, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=len(distinct))
    pieces = np.split(order, np.cumsum(counts)[:-1])
    return [
        (utc_day(int(day) * US_PER_DAY), batch.take(rows))
        for day, rows in zip(distinct.tolist(), pieces, strict=True)
    ]


# ---------------------------------------------------------------------- stream positions


@dataclass(frozen=True)
class StreamPosition:
    """A record's place in a stream: sequence numbers are ordered within one shard only."""

    stream: str
    shard_id: str
    sequence: int

    def covers(self, other: StreamPosition) -> bool:
        """True when ``other`` is on the same shard and not after this position."""
        return (
            self.stream == other.stream
            and self.shard_id == other.shard_id
            and other.sequence <= self.sequence
        )


@dataclass(frozen=True)
class DayPiece:
    """The rows one stream record contributes to one household-day.

    ``source`` is the record's index in the delivered batch, so the shell can map a failed
    household-day back to the records to report.
    """

    source: int
    position: StreamPosition
    rows: ReadingBatch


def group_by_household_day(
    records: Iterable[tuple[StreamPosition, ReadingBatch]],
) -> dict[DayKey, list[DayPiece]]:
    """Every record of a delivered batch, split by (household, UTC day), in delivery order.

    Grouping the whole batch first is what lets the shell do one read-merge-write per
    household-day and invocation instead of one per record.
    """
    groups: dict[DayKey, list[DayPiece]] = {}
    for source, (position, batch) in enumerate(records):
        for day, rows in split_by_day(batch):
            key = DayKey(batch.household_id, day)
            groups.setdefault(key, []).append(DayPiece(source, position, rows))
    return groups


def unmerged(pieces: Sequence[DayPiece], merged_up_to: StreamPosition | None) -> list[DayPiece]:
    """The pieces an object does not hold yet: those after its stored stream position.

    Pieces from another shard (e.g. after resharding) are kept; content dedupe handles them.
    """
    if merged_up_to is None:
        return list(pieces)
    return [piece for piece in pieces if not merged_up_to.covers(piece.position)]


def last_position(pieces: Sequence[DayPiece]) -> StreamPosition:
    """The position to store after merging ``pieces`` (Lambda batches come from one shard)."""
    if not pieces:
        raise ValueError("no pieces")
    shard = pieces[-1].position
    return max(
        (
            p.position
            for p in pieces
            if (p.position.stream, p.position.shard_id) == (shard.stream, shard.shard_id)
        ),
        key=lambda position: position.sequence,
    )


# --------------------------------------------------------------------------------- merge


def _same(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Bit equality, any NaN equal to any NaN (NaN only ever means 'absent')."""
    return (a.view(np.int64) == b.view(np.int64)) | (np.isnan(a) & np.isnan(b))


def _dedupe_last(batch: ReadingBatch) -> ReadingBatch:
    """Sorted by time, one row per timestamp: the last one in ``batch`` order."""
    order = np.argsort(batch.timestamps_us, kind="stable")
    stamps = batch.timestamps_us[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = stamps[1:] != stamps[:-1]
    keep = order[last]
    if len(keep) == len(batch) and bool(np.all(keep[1:] > keep[:-1])):
        return batch  # already sorted and unique: no copy
    return batch.take(keep)


@dataclass(frozen=True)
class DayMerge:
    """The merged day and what the merge did, for metrics and for skipping writes.

    ``added``: timestamps that were not archived; ``updated``: archived timestamps whose
    values changed (a conflicting later copy won); ``duplicates``: incoming rows that
    changed nothing. ``replaced``: every copy that lost to a later copy with *different*
    values (archived rows, and earlier copies within the incoming records), so the
    shell can keep a record of it (``conflicts/``): a conflict is never silent.
    Identical copies are plain duplicates and are not in ``replaced``.
    """

    rows: ReadingBatch
    added: int
    updated: int
    duplicates: int
    replaced: ReadingBatch | None = None

    @property
    def changed(self) -> bool:
        """Whether the object must be rewritten."""
        return bool(self.added or self.updated)

    @property
    def conflicts(self) -> int:
        """How many copies were replaced by a different later value."""
        return 0 if self.replaced is None else len(self.replaced)


def merge_day(existing: ReadingBatch | None, incoming: Sequence[ReadingBatch]) -> DayMerge:
    """Existing rows, then incoming rows in delivery order; one row per timestamp, sorted.

    On conflicting values the last received copy wins (see the module docstring), and the
    copies it replaced are returned in ``replaced``.
    """
    parts = ([existing] if existing is not None else []) + list(incoming)
    if not parts:
        raise ValueError("nothing to merge")
    household = parts[0].household_id
    base = _dedupe_last(existing) if existing is not None else ReadingBatch.empty(household)
    combined = ReadingBatch.concat([base, *incoming])
    order = np.argsort(combined.timestamps_us, kind="stable")
    stamps = combined.timestamps_us[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = stamps[1:] != stamps[:-1]
    winners = order[last]
    merged = (
        combined
        if len(winners) == len(combined) and bool(np.all(winners[1:] > winners[:-1]))
        else combined.take(winners)
    )
    # every losing copy, compared with the copy that won its timestamp
    group = np.cumsum(np.concatenate([[True], last[:-1]])) - 1
    losers = order[~last]
    winner_of_loser = winners[group[~last]]
    differs = np.zeros(len(losers), dtype=bool)
    for name in MEASUREMENT_FIELDS:
        column = combined.columns[name]
        differs |= ~_same(column[losers], column[winner_of_loser])
    replaced = None
    if differs.any():  # one record per distinct replaced value (a redelivery is one copy)
        lost = np.sort(losers[differs])
        key = np.rec.fromarrays([combined.timestamps_us[lost], combined.take(lost).row_hashes()])
        _, first = np.unique(key, return_index=True)
        replaced = combined.take(lost[np.sort(first)])
    # base's timestamps are a subset of merged's, both sorted and unique.
    at = np.searchsorted(merged.timestamps_us, base.timestamps_us)
    same = np.ones(len(base), dtype=bool)
    for name in MEASUREMENT_FIELDS:
        same &= _same(merged.columns[name][at], base.columns[name])
    added = len(merged) - len(base)
    updated = int(np.count_nonzero(~same))
    return DayMerge(
        rows=merged,
        added=added,
        updated=updated,
        duplicates=sum(len(b) for b in incoming) - added - updated,
        replaced=replaced,
    )


# ------------------------------------------------------------------------------ summary


def summarize_day(
    rows: ReadingBatch,
    day: dt.date,
    *,
    default_interval_s: float = DEFAULT_LIMITS.default_interval_s,
) -> DailySummary:
    """kWh, peak kW, coverage, count and first/last time of the rows of one UTC day.

    A reading's energy is ``energy_kwh`` when sent, else power x interval; its power is
    ``global_active_power_kw`` when sent, else ``energy_kwh`` over its interval (London
    half-hourly meters send energy only).
    """
    if not len(rows):
        raise ValueError("a summary needs at least one reading")
    start_us = _day_start_us(day)
    stamps = rows.timestamps_us
    if int(stamps.min()) < start_us or int(stamps.max()) >= start_us + US_PER_DAY:
        raise ValueError(f"rows outside {day}")
    cols = rows.columns
    interval_s = np.where(np.isnan(cols["interval_s"]), default_interval_s, cols["interval_s"])
    power = cols["global_active_power_kw"]
    energy = np.where(np.isnan(cols["energy_kwh"]), power * interval_s / 3600.0, cols["energy_kwh"])
    power = np.where(np.isnan(power), energy * 3600.0 / interval_s, power)
    return DailySummary(
        household_id=rows.household_id,
        date=day,
        readings=len(rows),
        kwh=float(np.nansum(energy)),
        peak_kw=float(np.nanmax(power)) if not np.isnan(power).all() else 0.0,
        coverage=_covered_us(stamps, interval_s, start_us) / US_PER_DAY,
        first_timestamp=us_to_datetime(int(stamps.min())),
        last_timestamp=us_to_datetime(int(stamps.max())),
    )


def _covered_us(
    stamps: npt.NDArray[np.int64], interval_s: npt.NDArray[np.float64], start_us: int
) -> int:
    """Length of the union of ``[t, t + interval)`` within the day, in microseconds."""
    order = np.argsort(stamps, kind="stable")
    begins = stamps[order]
    ends = np.minimum(
        begins + np.round(np.minimum(interval_s[order], 86_400.0) * 1e6).astype(np.int64),
        start_us + US_PER_DAY,
    )
    reach = np.maximum.accumulate(ends)
    previous = np.concatenate([[begins[0]], reach[:-1]])
    return int(np.clip(ends - np.maximum(begins, previous), 0, None).sum())


# --------------------------------------------------------------------------------- port


@dataclass(frozen=True)
class StoredDay:
    """A household-day as archived, with the stream position it has merged up to."""

    rows: ReadingBatch
    merged_up_to: StreamPosition | None


class ArchiveStore(Protocol):
    """Where household-days and their summaries live (S3 in production)."""

    def read_day(self, key: DayKey) -> StoredDay | None: ...

    def write_day(
        self, key: DayKey, rows: ReadingBatch, *, merged_up_to: StreamPosition
    ) -> str: ...

    def write_summary(self, summary: DailySummary) -> bool: ...

    def write_conflicts(
        self, key: DayKey, replaced: ReadingBatch, *, replaced_by: StreamPosition
    ) -> str: ...
