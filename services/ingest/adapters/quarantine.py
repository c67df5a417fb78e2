"""The quarantine on AWS: rejected items batched into S3 objects, one SQS pointer each.

Why batched: a request of 10,000 bad items used to cost 10,000 PUTs and 10,000 messages
(minutes, far past API Gateway's 29 s), so any client could tie up the endpoint. Now the
cost per call is bounded: the items of one call (one request, one upload chunk, one
Lambda batch) go into as few S3 objects as their size needs (JSON Lines, one
:class:`~shared.schema.Quarantined` per line, at most ``max_object_items`` items and about
``max_object_bytes`` each), and each object is announced by ONE small SQS message that
points to it (bucket, key, item count, counts per reason code, the first reason), sent in
batches of ten through :class:`shared.quarantine.SqsQuarantine`. Read an object back with
:func:`shared.quarantine.read_quarantine_object`.

S3 keeps every item (any size, for as long as needed, listable by source and day); the
queue tells operators and replay tools that something was rejected, in order of arrival.
Input is delivered at least once, so the S3 key is *deterministic* (a hash of what the
items are), and a re-delivered call overwrites its own object instead of adding a copy.
Nothing is lost silently: anything that could not be stored raises
:class:`QuarantineError`, so the caller fails its request or message and is retried.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from shared.parallel import each
from shared.quarantine import (
    SQS_MAX_MESSAGE_BYTES,
    QuarantineError,
    SqsQuarantine,
    pointer_message,
    reason_code,
)
from shared.schema import Quarantined

__all__ = [
    "SQS_MAX_MESSAGE_BYTES",
    "QuarantineError",
    "S3SqsQuarantine",
    "item_digest",
    "quarantine_key",
]

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._=-]+")


def item_digest(item: Quarantined) -> bytes:
    """SHA-256 of what an item is: source, reason, coordinates and original bytes.

    Not the time it was quarantined, so a re-delivered item has the same digest.
    """
    digest = hashlib.sha256()
    for part in (
        item.source.encode(),
        item.reason.encode(),
        item.coordinates.model_dump_json().encode() if item.coordinates else b"",
    ):
        digest.update(len(part).to_bytes(8, "big") + part)
    digest.update(item.original)
    return digest.digest()


def quarantine_key(items: Sequence[Quarantined], prefix: str = "quarantine/") -> str:
    """``prefix + source/YYYY/MM/DD/code/sha256.jsonl``, the same for the same items.

    The hash covers every item's digest in order (see :func:`item_digest`), so a
    re-delivered call lands on the same key; the day is the quarantine day of the first
    item, so a re-delivery after midnight UTC makes a second copy, never a loss. ``code``
    is the items' reason code, or ``mixed``; source and code are sanitised for the key.
    """
    if not items:
        raise ValueError("no items")
    digest = hashlib.sha256()
    for item in items:
        digest.update(item_digest(item))
    first = items[0]
    codes = {reason_code(item) for item in items}
    source = _UNSAFE.sub("_", first.source).strip("_")[:100] or "unknown"
    code = _UNSAFE.sub("_", codes.pop() if len(codes) == 1 else "mixed").strip("_")[:64]
    return (
        f"{prefix}{source}/{first.quarantined_at:%Y/%m/%d}/{code or 'unknown'}/"
        f"{digest.hexdigest()}.jsonl"
    )


class S3SqsQuarantine:
    """A ``QuarantineSink`` writing batched objects to S3 and pointers to SQS (injected
    clients). Cost per call: ``ceil(size / max_object_bytes)`` PUTs (in parallel, up to
    ``max_workers``) and one SendMessageBatch per ten objects."""

    def __init__(
        self,
        bucket: str,
        queue_url: str,
        *,
        s3: Any,
        sqs: Any,
        prefix: str = "quarantine/",
        max_attempts: int = 5,
        max_workers: int = 8,
        max_object_items: int = 10_000,
        max_object_bytes: int = 16 * 1024 * 1024,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if min(max_workers, max_object_items, max_object_bytes) < 1:
            raise ValueError("max_workers, max_object_items and max_object_bytes must be >= 1")
        self.bucket = bucket
        self.queue_url = queue_url
        self.prefix = prefix
        self._s3 = s3
        self._queue = SqsQuarantine(
            queue_url, sqs=sqs, max_attempts=max_attempts, sleep=sleep, rng=rng
        )
        self._max_workers = max_workers
        self._max_items = max_object_items
        self._max_bytes = max_object_bytes

    def quarantine(self, items: Sequence[Quarantined]) -> None:
        """Store the items in batched S3 objects, then announce each object on SQS."""
        if not items:
            return
        lines = [item.model_dump_json() for item in items]
        groups = self._groups(lines)
        keys = [quarantine_key([items[i] for i in group], self.prefix) for group in groups]
        bodies = ["\n".join(lines[i] for i in group).encode() + b"\n" for group in groups]
        self._put_objects(keys, bodies)
        messages = [
            pointer_message(
                [items[i] for i in group],
                {"bucket": self.bucket, "key": key},
                document_bytes=len(body),
            )
            for group, key, body in zip(groups, keys, bodies, strict=True)
        ]
        try:
            self._queue.send(messages)
        except QuarantineError as error:
            raise QuarantineError(f"{error} (the items are in s3://{self.bucket})") from error

    def _groups(self, lines: Sequence[str]) -> list[list[int]]:
        """Consecutive items, at most ``max_object_items`` and about ``max_object_bytes``."""
        groups: list[list[int]] = []
        current: list[int] = []
        size = 0
        for index, line in enumerate(lines):
            length = len(line) + 1
            if current and (len(current) >= self._max_items or size + length > self._max_bytes):
                groups.append(current)
                current, size = [], 0
            current.append(index)
            size += length
        groups.append(current)
        return groups

    def _put_objects(self, keys: list[str], bodies: list[bytes]) -> None:
        def put(key: str, body: bytes) -> None:
            self._s3.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson"
            )

        # boto3 clients are thread-safe; PUTs are independent, so a few run at once.
        body_of = dict(zip(keys, bodies, strict=True))
        written = each(keys, lambda key: put(key, body_of[key]), max_workers=self._max_workers)
        failures = [
            f"{key}: {type(error).__name__}: {error}"
            for key, error in written.items()
            if isinstance(error, Exception)
        ]
        if failures:
            raise QuarantineError(
                f"{len(failures)} of {len(keys)} quarantine objects could not be written to "
                f"s3://{self.bucket}: {failures[:3]}"
            )
