"""The smallest stream interface every bus adapter implements.

Kept tiny on purpose so that Kinesis, Kafka and in-memory fakes can all satisfy it:
a record is a partition key plus opaque bytes (the codec decides what the bytes are).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One record to put on a stream; the partition key keeps a household on one shard."""

    partition_key: str
    data: bytes


@dataclass(frozen=True, slots=True)
class PublishReport:
    """What a publish call did, for metrics and progress (retries are not failures)."""

    records: int
    bytes: int
    requests: int
    retried_entries: int = 0
    throttled_entries: int = 0

    def metric_counts(self) -> dict[str, int]:
        """Metric name -> count, so every shell reports publishing the same way (EMF)."""
        return {
            "PublishRequests": self.requests,
            "PublishRetriedEntries": self.retried_entries,
            "PublishThrottledEntries": self.throttled_entries,
        }


class PublishError(RuntimeError):
    """Raised when some records could still not be written after the retry bound.

    It carries the records that failed so the caller can quarantine or re-queue them:
    nothing is dropped silently.
    """

    def __init__(
        self,
        message: str,
        *,
        failed: Sequence[StreamRecord] = (),
        error_codes: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.failed = tuple(failed)
        self.error_codes = tuple(error_codes)


class StreamPublisher(Protocol):
    """Writes records to one stream, in order per partition key, or raises PublishError."""

    def publish(self, records: Sequence[StreamRecord]) -> PublishReport: ...
