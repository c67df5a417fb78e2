"""Small AWS adapters of the gateway's ports: S3 objects, SQS quarantine and queue depths.

Clients are injected (built in the composition roots), so the same classes talk to AWS
or to the local stack.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from botocore.exceptions import ClientError

from services.gateway.ports import ObjectMissing
from shared.retry import RetryPolicy
from shared.schema import Quarantined

__all__ = ["S3Objects", "S3Uploads", "SqsQuarantine", "SqsQueueDepths"]

SQS_MAX_MESSAGE_BYTES: Final = 256 * 1024
_MISSING: Final = frozenset({"NoSuchKey", "404", "NotFound"})


class S3Objects:
    """``ObjectReader`` on S3."""

    def __init__(self, *, s3: Any) -> None:
        self._s3 = s3

    def read(self, bucket: str, key: str) -> bytes:
        try:
            return bytes(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING:
                raise ObjectMissing(f"s3://{bucket}/{key}") from error
            raise


class S3Uploads:
    """``UploadStore`` on the raw bucket (uploads in, ingest's reports out)."""

    def __init__(self, bucket: str, *, s3: Any) -> None:
        self.bucket = bucket
        self._objects = S3Objects(s3=s3)
        self._s3 = s3

    def put(self, key: str, body: bytes) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    def report(self, key: str) -> dict[str, Any] | None:
        try:
            document = json.loads(self._objects.read(self.bucket, key))
        except ObjectMissing:
            return None
        return document if isinstance(document, dict) else {"report": document}


class SqsQuarantine:
    """A ``QuarantineSink`` on the quarantine queue: one message per refused item.

    The gateway's consumers refuse whole stream records (undecodable readings, invalid
    forecasts) or result objects. An item whose JSON exceeds an SQS message carries its
    coordinates instead of its bytes (stream, shard and sequence number, or bucket and
    key), from which the original is re-read within the stream's retention or from S3.
    """

    def __init__(
        self,
        queue_url: str,
        *,
        sqs: Any,
        max_attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.queue_url = queue_url
        self._sqs = sqs
        self._retry = RetryPolicy(max_attempts=max_attempts)
        self._sleep = sleep
        self._rng = rng or random.Random()

    def _body(self, item: Quarantined) -> str:
        document = item.model_dump_json()
        if len(document.encode()) <= SQS_MAX_MESSAGE_BYTES:
            return document
        return json.dumps(
            {
                "pointer": True,
                "reason": item.reason[:1000],
                "source": item.source[:1000],
                "coordinates": item.coordinates.model_dump(mode="json")
                if item.coordinates
                else None,
                "quarantined_at": item.quarantined_at.isoformat(),
                "original_bytes": len(item.original),
            }
        )

    def quarantine(self, items: Sequence[Quarantined]) -> None:
        for start in range(0, len(items), 10):
            entries = {str(i): self._body(item) for i, item in enumerate(items[start : start + 10])}
            failed: list[dict[str, Any]] = []
            for attempt in range(1, self._retry.max_attempts + 1):
                if attempt > 1:
                    self._sleep(self._retry.delay(attempt - 1, self._rng))
                reply = self._sqs.send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": i, "MessageBody": b} for i, b in entries.items()],
                )
                failed = reply.get("Failed", [])
                entries = {f["Id"]: entries[f["Id"]] for f in failed}
                if not entries or any(f.get("SenderFault") for f in failed):
                    break
            if failed:
                raise RuntimeError(f"{len(failed)} quarantine messages not sent: {failed[:3]}")


class SqsQueueDepths:
    """``QueueDepths`` from SQS attributes (visible plus in-flight messages)."""

    def __init__(self, queues: Mapping[str, str], *, sqs: Any) -> None:
        self.queues = dict(queues)
        self._sqs = sqs

    def depths(self) -> dict[str, int | None]:
        result: dict[str, int | None] = {}
        for name, url in self.queues.items():
            try:
                attributes = self._sqs.get_queue_attributes(
                    QueueUrl=url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                    ],
                )["Attributes"]
                result[name] = int(attributes["ApproximateNumberOfMessages"]) + int(
                    attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
                )
            except (ClientError, KeyError, ValueError):
                result[name] = None
        return result
