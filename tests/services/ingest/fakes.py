"""In-memory fakes of ingest's ports and of the stream publisher (fakes over mocks)."""

from __future__ import annotations

from collections.abc import Sequence

from shared.schema import Quarantined
from shared.streams.ports import PublishReport, StreamRecord


class MemoryQuarantine:
    """Collects quarantined items; ``fail`` makes it raise, to prove nothing is lost."""

    def __init__(self, *, fail: bool = False) -> None:
        self.items: list[Quarantined] = []
        self.calls = 0
        self.fail = fail

    def quarantine(self, items: Sequence[Quarantined]) -> None:
        if self.fail:
            raise OSError("quarantine store unavailable")
        self.calls += 1
        self.items.extend(items)


class MemoryPublisher:
    """Collects published records in order."""

    def __init__(self) -> None:
        self.records: list[StreamRecord] = []

    def publish(self, records: Sequence[StreamRecord]) -> PublishReport:
        self.records.extend(records)
        return PublishReport(
            records=len(records), bytes=sum(len(r.data) for r in records), requests=1
        )
