"""The demo's history: real daily summaries of the UCI house before the shipped April slice.

Why: the monthly model (Prophet) needs 28 usable days and the April 2007 slice alone has
26-27, so without history every monthly result of ``wattstream run`` would be the
fallback. ``data/uci_daily_summaries_2006-12_2007-03.csv`` holds the UCI house's 105
daily summaries from the start of its file (2006-12-16) to 2007-03-30, the last whole
UTC day before the slice, as
the archive computes them (:func:`services.ingest.core.archive.summarize_day` over UTC
days of the real minutes). ``wattstream run`` writes them into the archive *before* the
replay, shifted by the same whole number of days as the replay (the last history day
lands on the day before the replay's first), so each replayed household's archive reads
as the real house's continuous history, and the monthly service gets S3 events for them
like for any summary.

Seeding is idempotent and never overwrites: a summary that exists (seeded before, or
written by the archive from real readings) is kept. A replayed household other than the
first (``--households N``) gets the history scaled like its replay (its power scale).

Rebuild the file from the full UCI data (``python -m wattstream.demo_history --uci
../shared/data/uci_household_power_consumption.txt.gz``); the result is the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from shared.archive_layout import parse_summary_key, summary_key, summary_prefix
from shared.schema import DailySummary
from wattstream.settings import PACKAGE_ROOT

__all__ = [
    "HISTORY_FILE",
    "SLICE_FIRST_DAY",
    "HistoryDay",
    "SeedReport",
    "build_history",
    "history_summaries",
    "load_history",
    "seed_archive",
    "seed_demo_history",
]

HISTORY_FILE: Final = PACKAGE_ROOT / "data" / "uci_daily_summaries_2006-12_2007-03.csv"
SLICE_FIRST_DAY: Final = dt.date(2007, 3, 31)
"""The first UTC day of the April slice (its first minute, local midnight, is 23:00 UTC)."""

_FIELDS: Final = ("date", "readings", "kwh", "peak_kw", "coverage", "first_s", "last_s")


@dataclass(frozen=True)
class HistoryDay:
    """One real daily summary, its times as seconds into its UTC day (shiftable)."""

    date: dt.date
    readings: int
    kwh: float
    peak_kw: float
    coverage: float
    first_s: int
    last_s: int


def load_history(path: Path = HISTORY_FILE) -> list[HistoryDay]:
    """The shipped history, oldest first."""
    with path.open(newline="") as handle:
        return [
            HistoryDay(
                date=dt.date.fromisoformat(row["date"]),
                readings=int(row["readings"]),
                kwh=float(row["kwh"]),
                peak_kw=float(row["peak_kw"]),
                coverage=float(row["coverage"]),
                first_s=int(row["first_s"]),
                last_s=int(row["last_s"]),
            )
            for row in csv.DictReader(handle)
        ]


def history_summaries(
    household_id: str,
    history: Sequence[HistoryDay],
    *,
    last_day: dt.date,
    scale: float = 1.0,
) -> list[DailySummary]:
    """``history`` as ``household_id``'s summaries, shifted so it ends on ``last_day``.

    Example:
        >>> day = HistoryDay(dt.date(2007, 3, 30), 1440, 30.0, 5.0, 1.0, 0, 86340)
        >>> [s.date for s in history_summaries("uci-0001", [day], last_day=dt.date(2026, 1, 9))]
        [datetime.date(2026, 1, 9)]
    """
    if not history:
        return []
    shift = last_day - history[-1].date
    out = []
    for day in history:
        date = day.date + shift
        midnight = dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC)
        out.append(
            DailySummary(
                household_id=household_id,
                date=date,
                readings=day.readings,
                kwh=round(day.kwh * scale, 6),
                peak_kw=round(day.peak_kw * scale, 6),
                coverage=day.coverage,
                first_timestamp=midnight + dt.timedelta(seconds=day.first_s),
                last_timestamp=midnight + dt.timedelta(seconds=day.last_s),
            )
        )
    return out


@dataclass(frozen=True)
class SeedReport:
    """What seeding did: summaries written, and those kept because they existed."""

    written: int
    kept: int


def seed_archive(s3: Any, bucket: str, summaries: Iterable[DailySummary]) -> SeedReport:
    """Put each summary whose key does not exist yet (idempotent; never overwrites)."""
    by_household: dict[str, list[DailySummary]] = {}
    for item in summaries:
        by_household.setdefault(item.household_id, []).append(item)
    written = kept = 0
    for household, items in by_household.items():
        existing = set()
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=summary_prefix(household)
        )
        for page in pages:
            for entry in page.get("Contents", []):
                parsed = parse_summary_key(entry["Key"])
                if parsed is not None:
                    existing.add(parsed[1])
        for item in items:
            if item.date in existing:
                kept += 1
                continue
            s3.put_object(
                Bucket=bucket,
                Key=summary_key(household, item.date),
                Body=item.model_dump_json().encode(),
                ContentType="application/json",
            )
            written += 1
    return SeedReport(written=written, kept=kept)


def seed_demo_history(
    description: Any, data_path: Path, *, households: int, first_day: dt.date, seed: int = 0
) -> SeedReport:
    """Seed the running stack's archive for a replay of ``data_path`` starting on ``first_day``.

    The replayed households are those of the replay plan (same ids, same power scales as
    ``wattstream replay --households N --seed S``); the history ends the day before.
    """
    from services.ingest.core.replay import plan_replay
    from services.ingest.sources import load_uci_series
    from wattstream.local.server import client_factory

    plan = plan_replay(households, minutes=len(load_uci_series(data_path)), seed=seed)
    history = load_history()
    last_day = first_day - dt.timedelta(days=1)
    summaries = [
        s
        for household, scale in zip(plan.household_ids, plan.scales, strict=True)
        for s in history_summaries(household, history, last_day=last_day, scale=float(scale))
    ]
    s3 = client_factory(description.endpoint_url, description.region)("s3")
    return seed_archive(s3, description.outputs["ArchiveBucketName"], summaries)


# ------------------------------------------------------------------- building the file


def build_history(uci_path: Path, *, before: dt.date = SLICE_FIRST_DAY) -> list[HistoryDay]:
    """The UCI house's daily summaries of every UTC day before ``before`` (real minutes)."""
    import numpy as np

    from services.ingest.core.archive import summarize_day
    from shared.batch import ReadingBatch
    from shared.uci import iter_uci

    limit_us = int(dt.datetime.combine(before, dt.time(), tzinfo=dt.UTC).timestamp() * 1e6)
    batches = []
    for chunk in iter_uci(uci_path):
        batch = chunk.readings
        keep = batch.timestamps_us < limit_us
        if keep.any():
            batches.append(batch.take(np.flatnonzero(keep)))
        if chunk.first_timestamp_us is not None and chunk.first_timestamp_us >= limit_us:
            break
    rows = ReadingBatch.concat(batches)
    days = rows.timestamps_us // 86_400_000_000
    out = []
    for value in np.unique(days):
        day = dt.date(1970, 1, 1) + dt.timedelta(days=int(value))
        summary = summarize_day(rows.take(np.flatnonzero(days == value)), day)
        midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        out.append(
            HistoryDay(
                date=day,
                readings=summary.readings,
                kwh=round(summary.kwh, 6),
                peak_kw=round(summary.peak_kw, 6),
                coverage=round(summary.coverage, 6),
                first_s=int((summary.first_timestamp - midnight).total_seconds()),
                last_s=int((summary.last_timestamp - midnight).total_seconds()),
            )
        )
    return out


def history_csv(days: Sequence[HistoryDay]) -> str:
    """The CSV text of ``days`` (the shipped file's format)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_FIELDS)
    for d in days:
        writer.writerow(
            [d.date.isoformat(), d.readings, d.kwh, d.peak_kw, d.coverage, d.first_s, d.last_s]
        )
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wattstream.demo_history")
    parser.add_argument("--uci", type=Path, required=True, help="the full UCI file")
    parser.add_argument("--out", type=Path, default=HISTORY_FILE)
    args = parser.parse_args(argv)
    days = build_history(args.uci)
    args.out.write_text(history_csv(days))
    print(f"{len(days)} days, {days[0].date} .. {days[-1].date} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
