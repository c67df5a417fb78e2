"""Small AWS adapters of the gateway's ports: S3 objects, uploads and queue depths.

Clients are injected (built in the composition roots), so the same classes talk to AWS
or to the local stack.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from botocore.exceptions import ClientError

from services.gateway.ports import ObjectMissing

__all__ = ["S3Objects", "S3Uploads", "SqsQueueDepths"]

SQS_MAX_MESSAGE_BYTES: Final = 256 * 1024
_MISSING: Final = frozenset({"NoSuchKey", "404", "NotFound"})


class S3Objects:
    """``ObjectReader`` and ``ObjectWriter`` on S3."""

    def __init__(self, *, s3: Any) -> None:
        self._s3 = s3

    def read(self, bucket: str, key: str) -> bytes:
        try:
            return bytes(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING:
                raise ObjectMissing(f"s3://{bucket}/{key}") from error
            raise

    def write(self, bucket: str, key: str, body: bytes, content_type: str) -> None:
        self._s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


class S3Uploads:
    """``UploadStore`` on the raw bucket (uploads in, ingest's reports out)."""

    def __init__(self, bucket: str, *, s3: Any) -> None:
        self.bucket = bucket
        self._objects = S3Objects(s3=s3)
        self._s3 = s3

    def put(self, key: str, body: bytes, metadata: Mapping[str, str] | None = None) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=dict(metadata or {}))

    def report(self, key: str) -> dict[str, Any] | None:
        try:
            document = json.loads(self._objects.read(self.bucket, key))
        except ObjectMissing:
            return None
        return document if isinstance(document, dict) else {"report": document}


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
