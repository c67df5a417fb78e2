"""The quarantine queue, shared by every service; and the batched quarantine format.

The queue tells operators and replay tools that something was refused, in order of
arrival. :class:`SqsQuarantine` alone (the stream consumers that keep nothing in S3)
sends one message per item: the item's JSON (``Quarantined``: original bytes, reason,
source, coordinates), or, past :data:`SQS_MAX_MESSAGE_BYTES`, a small pointer to its
coordinates, from which the original is re-read. Where items are stored in S3 (ingest's
``S3SqsQuarantine``), one object holds a whole call's items (JSON Lines, read back with
:func:`read_quarantine_object`) and ONE :func:`pointer_message` announces it: the cost of
a bad item is bounded. Messages go out in batches of at most ten and 256 KiB; entries
that fail are retried with capped, jittered backoff (sender faults are not retried: they
cannot succeed); anything still unsent raises :class:`QuarantineError`, so the caller
fails its input and is retried. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from shared.retry import RetryPolicy
from shared.schema import Quarantined

__all__ = [
    "SQS_MAX_MESSAGE_BYTES",
    "QuarantineError",
    "SqsQuarantine",
    "message_body",
    "message_items",
    "pointer_message",
    "read_quarantine_object",
    "reason_code",
]

SQS_MAX_MESSAGE_BYTES: Final = 256 * 1024
"""SQS limit for one message and for the sum of one SendMessageBatch request."""
SQS_MAX_BATCH_ENTRIES: Final = 10


class QuarantineError(RuntimeError):
    """Some items could not be stored; the caller must not acknowledge its input."""


def message_body(
    item: Quarantined, document: str, location: Mapping[str, str] | None = None
) -> str:
    """The item's JSON ``document``, or a pointer when it does not fit in a message."""
    if len(document.encode()) <= SQS_MAX_MESSAGE_BYTES:
        return document
    return json.dumps(
        {
            "pointer": True,
            **(location or {}),
            "reason": item.reason[:1000],
            "source": item.source[:1000],
            "coordinates": item.coordinates.model_dump(mode="json") if item.coordinates else None,
            "quarantined_at": item.quarantined_at.isoformat(),
            "original_bytes": len(item.original),
            "document_bytes": len(document.encode()),
        }
    )


def reason_code(item: Quarantined) -> str:
    """The stable code a reason starts with (``"negative_power: ..."`` -> ``negative_power``)."""
    return item.reason.split(":", 1)[0].strip()[:64] or "unknown"


def pointer_message(
    items: Sequence[Quarantined], location: Mapping[str, str], *, document_bytes: int
) -> str:
    """ONE message announcing a stored batch of items: where it is and what it holds.

    ``items`` (the count), ``codes`` (count per reason code) and the first item's reason,
    source and coordinates let an operator triage without reading the object.
    """
    first = items[0]
    return json.dumps(
        {
            "pointer": True,
            **location,
            "items": len(items),
            "codes": dict(Counter(reason_code(item) for item in items).most_common(20)),
            "reason": first.reason[:1000],
            "source": first.source[:1000],
            "coordinates": first.coordinates.model_dump(mode="json") if first.coordinates else None,
            "quarantined_at": first.quarantined_at.isoformat(),
            "original_bytes": sum(len(item.original) for item in items),
            "document_bytes": document_bytes,
        }
    )


def message_items(body: str) -> int:
    """How many quarantined items one queue message stands for (a pointer: its count)."""
    try:
        document = json.loads(body)
    except ValueError:
        return 1
    if isinstance(document, dict) and document.get("pointer"):
        return int(document.get("items", 1))
    return 1


def read_quarantine_object(body: bytes) -> list[Quarantined]:
    """The items of a stored quarantine object (JSON Lines; a legacy object holds one)."""
    return [Quarantined.model_validate_json(line) for line in body.splitlines() if line.strip()]


class SqsQuarantine:
    """A ``QuarantineSink`` on the quarantine queue (injected client)."""

    def __init__(
        self,
        queue_url: str,
        *,
        sqs: Any,
        max_attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.queue_url = queue_url
        self._sqs = sqs
        self._max_attempts = max_attempts
        self._retry = RetryPolicy(max_attempts=max_attempts)
        self._sleep = sleep
        self._rng = rng or random.Random()

    def quarantine(self, items: Sequence[Quarantined]) -> None:
        """One message per item, the item itself or a pointer to its coordinates."""
        self.send([message_body(item, item.model_dump_json()) for item in items])

    def send(self, bodies: Sequence[str]) -> None:
        """Send message bodies in batches, retrying only the failed entries."""
        for batch in _batches(bodies):
            pending = dict(enumerate(batch))
            failed: list[dict[str, Any]] = []
            for attempt in range(1, self._max_attempts + 1):
                if attempt > 1:
                    self._sleep(self._retry.delay(attempt - 1, self._rng))
                response = self._sqs.send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "MessageBody": b} for i, b in pending.items()],
                )
                failed = response.get("Failed", [])
                if any(f.get("SenderFault") for f in failed):
                    break
                pending = {int(f["Id"]): pending[int(f["Id"])] for f in failed}
                if not pending:
                    break
            if failed:
                errors = [f"{f.get('Code')}: {f.get('Message', '')}" for f in failed]
                raise QuarantineError(
                    f"{len(failed)} quarantine messages could not be sent to "
                    f"{self.queue_url}: {errors[:3]}"
                )


def _batches(bodies: Sequence[str]) -> list[list[str]]:
    """Groups of at most ten messages and 256 KiB in total (each body is at most that)."""
    batches: list[list[str]] = []
    current: list[str] = []
    size = 0
    for body in bodies:
        length = len(body.encode())
        if current and (
            len(current) == SQS_MAX_BATCH_ENTRIES or size + length > SQS_MAX_MESSAGE_BYTES
        ):
            batches.append(current)
            current, size = [], 0
        current.append(body)
        size += length
    if current:
        batches.append(current)
    return batches
