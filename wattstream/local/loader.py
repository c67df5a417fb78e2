"""Load a UCI file onto the readings stream: parse in chunks, aggregate, publish.

This is the foundation's end-to-end path (file -> codec -> Kinesis adapter); the ingest
service's replay builds its validation and pacing on top of the same pieces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared.publishing import DEFAULT_READINGS_PER_RECORD, stream_records
from shared.streams.ports import StreamPublisher
from shared.uci import iter_uci


@dataclass
class LoadReport:
    readings_published: int = 0
    rows_missing: int = 0
    rows_malformed: int = 0
    records: int = 0
    bytes: int = 0


def publish_uci_file(
    path: Path,
    publisher: StreamPublisher,
    *,
    household_id: str = "uci-sceaux",
    readings_per_record: int = DEFAULT_READINGS_PER_RECORD,
    on_progress: Callable[[LoadReport], None] | None = None,
) -> LoadReport:
    """Publish every complete row of ``path``; missing rows are counted, never invented."""
    report = LoadReport()
    for chunk in iter_uci(path, household_id=household_id):
        batch = chunk.readings
        records = stream_records([batch], readings_per_record=readings_per_record)
        if records:
            publisher.publish(records)
        report.readings_published += len(batch)
        report.rows_missing += len(chunk.missing_timestamps_us)
        report.rows_malformed += len(chunk.malformed)
        report.records += len(records)
        report.bytes += sum(len(r.data) for r in records)
        if on_progress:
            on_progress(report)
    return report
