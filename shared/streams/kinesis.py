"""Kinesis adapter of the stream ports.

PutRecords can answer HTTP 200 while rejecting some entries (``FailedRecordCount``);
this publisher retries exactly those entries, with capped exponential backoff and full
jitter, and raises :class:`PublishError` carrying the still-failed records once the
bound is hit, so nothing is lost silently.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError, ConnectionError, EndpointConnectionError

from shared.retry import RetryPolicy
from shared.streams.ports import PublishError, PublishReport, StreamRecord

#: Service limits of PutRecords (AWS Kinesis Data Streams quotas).
MAX_ENTRIES_PER_REQUEST = 500
MAX_REQUEST_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024  # data + partition key
MAX_PARTITION_KEY_CHARS = 256

#: Whole-request errors worth retrying; anything else is a configuration error.
RETRYABLE_ERROR_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "LimitExceededException",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "KMSThrottlingException",
    }
)


def record_size(record: StreamRecord) -> int:
    """Bytes a record counts against the Kinesis limits (data plus UTF-8 partition key)."""
    return len(record.data) + len(record.partition_key.encode())


def check_record(record: StreamRecord) -> None:
    """Reject, before any network call, a record that Kinesis can never accept."""
    try:
        record.partition_key.encode()
    except UnicodeEncodeError as error:  # a lone surrogate: not text Kinesis can carry
        raise ValueError(f"partition key {record.partition_key!r} is not valid Unicode") from error
    if not record.partition_key or len(record.partition_key) > MAX_PARTITION_KEY_CHARS:
        raise ValueError(
            f"partition key must be 1-{MAX_PARTITION_KEY_CHARS} characters, "
            f"got {len(record.partition_key)}"
        )
    if record_size(record) > MAX_RECORD_BYTES:
        raise ValueError(
            f"record for partition key {record.partition_key!r} is {record_size(record)} bytes; "
            f"Kinesis accepts at most {MAX_RECORD_BYTES} (aggregate fewer readings per record)"
        )


def plan_requests(
    records: Sequence[StreamRecord], *, one_per_key: bool = True
) -> Iterator[list[int]]:
    """Group record indexes into PutRecords requests within the entry and byte limits.

    With ``one_per_key`` a request holds at most one record per partition key, so a
    retried entry can never land behind a later record of the same household: PutRecords
    gives no ordering guarantee between the entries of one request once some are retried.
    """
    pending = list(range(len(records)))
    while pending:
        batch: list[int] = []
        keys: set[str] = set()
        size = 0
        held: list[int] = []
        blocked: set[str] = set()
        for index in pending:
            record = records[index]
            key = record.partition_key
            fits = len(batch) < MAX_ENTRIES_PER_REQUEST and size + record_size(record) <= (
                MAX_REQUEST_BYTES
            )
            if key in blocked or not fits or (one_per_key and key in keys):
                held.append(index)
                blocked.add(key)  # keep this key's later records behind the held one
                continue
            batch.append(index)
            keys.add(key)
            size += record_size(record)
        yield batch
        pending = held


class KinesisPublisher:
    """Publishes records to one Kinesis stream through an injected boto3 client."""

    def __init__(
        self,
        stream_name: str,
        client: Any,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        preserve_order: bool = True,
    ) -> None:
        self.stream_name = stream_name
        self._client = client
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.preserve_order = preserve_order

    def publish(self, records: Sequence[StreamRecord]) -> PublishReport:
        """Write all records or raise PublishError with the ones that could not be written."""
        for record in records:
            check_record(record)
        requests = retried = throttled = 0
        for indexes in plan_requests(records, one_per_key=self.preserve_order):
            batch = [records[i] for i in indexes]
            r, t, n = self._put_with_retries(batch)
            retried += r
            throttled += t
            requests += n
        return PublishReport(
            records=len(records),
            bytes=sum(record_size(r) for r in records),
            requests=requests,
            retried_entries=retried,
            throttled_entries=throttled,
        )

    def _put_with_retries(self, batch: list[StreamRecord]) -> tuple[int, int, int]:
        """Send one request's entries; resend only the failed ones until the bound."""
        pending = batch
        retried = throttled = requests = 0
        last_codes: list[str] = []
        for attempt in range(1, self._retry.max_attempts + 1):
            if attempt > 1:
                retried += len(pending)
                self._sleep(self._retry.delay(attempt - 1, self._rng))
            requests += 1
            try:
                response = self._client.put_records(
                    StreamName=self.stream_name,
                    Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in pending],
                )
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code not in RETRYABLE_ERROR_CODES:
                    raise PublishError(
                        f"PutRecords to stream {self.stream_name!r} failed: {code}: {error}",
                        failed=tuple(pending),
                        error_codes=(code,),
                    ) from error
                throttled += len(pending)
                last_codes = [code] * len(pending)
                continue
            except (EndpointConnectionError, ConnectionError) as error:
                last_codes = [type(error).__name__] * len(pending)
                continue
            if not response.get("FailedRecordCount"):
                return retried, throttled, requests
            failed: list[StreamRecord] = []
            last_codes = []
            for record, entry in zip(pending, response["Records"], strict=True):
                if entry.get("ErrorCode"):
                    failed.append(record)
                    last_codes.append(entry["ErrorCode"])
                    if entry["ErrorCode"] == "ProvisionedThroughputExceededException":
                        throttled += 1
            pending = failed
        raise PublishError(
            f"{len(pending)} of {len(batch)} records still failed after "
            f"{self._retry.max_attempts} PutRecords attempts to stream {self.stream_name!r} "
            f"(last errors: {sorted(set(last_codes))})",
            failed=tuple(pending),
            error_codes=tuple(last_codes),
        )
