"""The quarantine on AWS: each rejected item as a JSON object in S3, plus one SQS message.

Why both: S3 keeps every item (any size, for as long as needed, listable by source and
day); the queue tells operators and replay tools that something was rejected, in order of
arrival. Input is delivered at least once, so the S3 key is *deterministic* (a hash of
what the item is), and a re-delivered item overwrites its own object instead of adding a
copy. Nothing is lost silently: anything that could not be stored raises
:class:`QuarantineError`, so the caller fails its request or message and is retried.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from shared.quarantine import SQS_MAX_MESSAGE_BYTES, QuarantineError, SqsQuarantine, message_body
from shared.schema import Quarantined

__all__ = ["SQS_MAX_MESSAGE_BYTES", "QuarantineError", "S3SqsQuarantine", "quarantine_key"]

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._=-]+")


def quarantine_key(item: Quarantined, prefix: str = "quarantine/") -> str:
    """``prefix + source/YYYY/MM/DD/code/sha256.json``, the same for the same item.

    The hash covers the source, the reason, the coordinates and the original bytes (not
    the time it was quarantined), so a re-delivered item lands on the same key; the day
    is the quarantine day, so a re-delivery after midnight UTC makes a second copy, never
    a loss. Source and code are sanitised for the key; the hash keeps them apart.
    """
    digest = hashlib.sha256()
    for part in (
        item.source.encode(),
        item.reason.encode(),
        item.coordinates.model_dump_json().encode() if item.coordinates else b"",
    ):
        digest.update(len(part).to_bytes(8, "big") + part)
    digest.update(item.original)
    source = _UNSAFE.sub("_", item.source).strip("_")[:100] or "unknown"
    code = _UNSAFE.sub("_", item.reason.split(":", 1)[0]).strip("_")[:64] or "unknown"
    return f"{prefix}{source}/{item.quarantined_at:%Y/%m/%d}/{code}/{digest.hexdigest()}.json"


class S3SqsQuarantine:
    """A ``QuarantineSink`` writing to an S3 bucket and an SQS queue (injected clients).

    SQS gets the item's JSON, or, past :data:`SQS_MAX_MESSAGE_BYTES`, a small pointer
    (bucket, key, reason, source, sizes), through :class:`shared.quarantine.SqsQuarantine`.
    """

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
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self.bucket = bucket
        self.queue_url = queue_url
        self.prefix = prefix
        self._s3 = s3
        self._queue = SqsQuarantine(
            queue_url, sqs=sqs, max_attempts=max_attempts, sleep=sleep, rng=rng
        )
        self._max_workers = max_workers

    def quarantine(self, items: Sequence[Quarantined]) -> None:
        """Store every item in S3, then announce each on SQS; raise if any step failed."""
        if not items:
            return
        documents = [item.model_dump_json() for item in items]
        keys = [quarantine_key(item, self.prefix) for item in items]
        self._put_objects(keys, documents)
        bodies = [
            message_body(item, document, {"bucket": self.bucket, "key": key})
            for item, key, document in zip(items, keys, documents, strict=True)
        ]
        try:
            self._queue.send(bodies)
        except QuarantineError as error:
            raise QuarantineError(f"{error} (the items are in s3://{self.bucket})") from error

    def _put_objects(self, keys: list[str], documents: list[str]) -> None:
        def put(key: str, document: str) -> None:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=document.encode(),
                ContentType="application/json",
            )

        failures: list[str] = []
        # boto3 clients are thread-safe; PUTs are independent, so a few run at once.
        with ThreadPoolExecutor(max_workers=min(self._max_workers, len(keys))) as pool:
            futures = [pool.submit(put, k, d) for k, d in zip(keys, documents, strict=True)]
            for key, future in zip(keys, futures, strict=True):
                error = future.exception()
                if error is not None:
                    failures.append(f"{key}: {type(error).__name__}: {error}")
        if failures:
            raise QuarantineError(
                f"{len(failures)} of {len(keys)} quarantined items could not be written to "
                f"s3://{self.bucket}: {failures[:3]}"
            )
