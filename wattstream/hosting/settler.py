"""Lambda's Kinesis event-source-mapping semantics, once, for every host that runs handlers.

The local runner (:mod:`wattstream.local.runner`), the KCL record processor
(:mod:`wattstream.hosting.kcl.processor`) and the faust worker
(:mod:`wattstream.hosting.kafka.worker`) all receive ordered records of one shard or
partition, hand them to a template function's handler as a Kinesis event, and must then do
what Lambda's mapping does with the reply. That is this module:

* :class:`MappingPolicy`: the mapping's settings (``BatchSize``, ``ReportBatchItemFailures``,
  ``BisectBatchOnFunctionError``, ``MaximumRetryAttempts``, ``MaximumRecordAgeInSeconds``);
* :func:`invoke_kinesis`: one invocation and what failed in it (a function error, or the
  ``batchItemFailures`` of a partial reply; a malformed reply fails the whole batch);
* :class:`BatchSettler`: a small state machine the host drives
  (:meth:`~BatchSettler.next_invocation` / :meth:`~BatchSettler.record_result`), or runs
  blocking with :meth:`~BatchSettler.settle`;
* :func:`failure_document` and :class:`SqsDestination`: what the on-failure destination gets.

The semantics, as AWS documents them for Kinesis event source mappings
(docs.aws.amazon.com/lambda/latest/dg/services-kinesis-batchfailurereporting.html and
kinesis-on-failure-destination.html):

* a partial batch response checkpoints just before the lowest reported sequence number and
  retries every record from there ("Lambda uses the record with the lowest sequence number
  as the checkpoint ... retries all records starting from that checkpoint"); progress made
  that way starts a new batch, so its retry count starts again;
* a malformed reply (an id that is not in the batch, a missing one) fails the whole batch;
* a function error with ``BisectBatchOnFunctionError`` splits the batch in two, whatever
  ``ReportBatchItemFailures`` says; splitting does not count as a retry;
* when ``MaximumRetryAttempts`` is exhausted, the batch being retried (from the checkpoint
  to its end) is discarded: its coordinates go to the on-failure destination and the
  mapping goes on after it. Records after the last failure are not committed separately:
  Lambda does not track them, the destination names the whole batch, and a redrive of it
  reprocesses them (handlers are idempotent);
* records older than ``MaximumRecordAgeInSeconds`` are discarded the same way, before an
  invocation.

Where a position is committed and where given-up records go is the host's business
(runner checkpoints, KCL checkpoints, Kafka offsets; an SQS queue or a dead-letter topic):
the settler calls the host's ``commit`` and ``give_up``. ``give_up`` must make the records
durable or raise; the settler changes no state until it returned, so a failed give-up is
tried again rather than skipped.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from shared.retry import backoff_delay
from wattstream.hosting.lambda_model import (
    Function,
    MappingStats,
    batch_item_failures,
    epoch_seconds,
    kinesis_event,
)
from wattstream.hosting.template import MappingSpec

__all__ = [
    "BatchSettler",
    "DeliveredRecord",
    "FailureDestination",
    "MappingPolicy",
    "Outcome",
    "SqsDestination",
    "failure_document",
    "invoke_kinesis",
    "queue_url",
]

Sleep = Callable[[float], None]
Clock = Callable[[], float]


@dataclass(frozen=True)
class MappingPolicy:
    """The mapping's batching and failure settings, with Lambda's meaning (-1: no limit)."""

    batch_size: int = 100
    report_item_failures: bool = True
    bisect_on_function_error: bool = False
    max_retry_attempts: int = -1
    max_record_age_s: int = -1
    base_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    @classmethod
    def of(cls, mapping: MappingSpec, **overrides: Any) -> MappingPolicy:
        """The policy of a template event source mapping (properties as CloudFormation has them)."""
        props = mapping.properties
        values: dict[str, Any] = {
            "batch_size": int(props.get("BatchSize", 100)),
            "report_item_failures": "ReportBatchItemFailures"
            in props.get("FunctionResponseTypes", []),
            "bisect_on_function_error": str(props.get("BisectBatchOnFunctionError", False)).lower()
            == "true",
            "max_retry_attempts": int(props.get("MaximumRetryAttempts", -1)),
            "max_record_age_s": int(props.get("MaximumRecordAgeInSeconds", -1) or -1),
        }
        return cls(**{**values, **overrides})

    def exhausted(self, failures: int) -> bool:
        """``failures`` failed invocations: is that past the first try plus the retries?"""
        return self.max_retry_attempts >= 0 and failures > self.max_retry_attempts

    def backoff_s(self, failures: int) -> float:
        """Wait before retry number ``failures`` (capped exponential, no jitter)."""
        return backoff_delay(failures, base_s=self.base_backoff_s, max_s=self.max_backoff_s)


@dataclass(frozen=True)
class DeliveredRecord:
    """A record as a host received it, in the GetRecords shape the event builder takes."""

    sequence: str
    partition_key: str
    data: bytes
    arrived_at: float

    @classmethod
    def of_get_records(cls, record: dict[str, Any]) -> DeliveredRecord:
        """From a Kinesis ``GetRecords`` reply's record."""
        return cls(
            sequence=str(record["SequenceNumber"]),
            partition_key=str(record["PartitionKey"]),
            data=bytes(record["Data"]),
            arrived_at=epoch_seconds(record["ApproximateArrivalTimestamp"]),
        )

    def as_get_records(self) -> dict[str, Any]:
        return {
            "PartitionKey": self.partition_key,
            "SequenceNumber": self.sequence,
            "Data": self.data,
            "ApproximateArrivalTimestamp": self.arrived_at,
        }


R = TypeVar("R", bound=DeliveredRecord)


@dataclass(frozen=True)
class Outcome:
    """One invocation: which records of the batch failed (indexes, ascending), and why."""

    failed: list[int]
    error: str
    function_error: bool


def invoke_kinesis(
    function: Function,
    records: Sequence[DeliveredRecord],
    *,
    shard_id: str,
    stream_arn: str,
    report_item_failures: bool,
) -> Outcome:
    """Invoke ``function`` with the Kinesis event of ``records``, as Lambda would."""
    event = kinesis_event(
        [r.as_get_records() for r in records],
        shard_id=shard_id,
        stream_arn=stream_arn,
        function_arn=function.spec.arn,
        region=function.spec.arn.split(":")[3],
    )
    result = function.invoke(event)
    everything = list(range(len(records)))
    if result.failed:
        return Outcome(everything, str(result.error), function_error=True)
    if not report_item_failures:
        return Outcome([], "", function_error=False)
    failed = batch_item_failures(result.response, [r.sequence for r in records])
    if failed is None:
        return Outcome(everything, "invalid batchItemFailures in the function response", True)
    indexes = [i for i, r in enumerate(records) if r.sequence in failed]
    return Outcome(indexes, "partial batch failure", function_error=False)


class BatchSettler(Generic[R]):
    """Settles the ordered records of one shard/partition the way Lambda's mapping does.

    A state machine over one batch at a time, driven by the host::

        settler.start(batch)
        while not settler.settled:
            records = settler.next_invocation()   # None: backing off (see wait_s)
            if records is not None:
                settler.record_result(invoke(records))

    (:meth:`settle` is that loop, blocking.) ``commit(record, why)`` records that
    everything up to ``record`` is settled; ``give_up(records, condition, error, retries)``
    must put the records somewhere durable, or raise.
    """

    def __init__(
        self,
        policy: MappingPolicy,
        *,
        commit: Callable[[R, str], None],
        give_up: Callable[[Sequence[R], str, str, int], None],
        stats: MappingStats,
        clock: Clock = time.time,
    ) -> None:
        self.policy = policy
        self.commit = commit
        self.give_up = give_up
        self.stats = stats
        self.clock = clock
        #: The batch still to settle, as consecutive segments (bisecting splits the first).
        self._segments: list[list[R]] = []
        self._failures = 0
        self._not_before = 0.0

    # --- the step API ---------------------------------------------------------------------

    def start(self, records: Sequence[R]) -> None:
        """Take the next batch (at most ``BatchSize`` records, in order) to settle."""
        if self._segments:
            raise RuntimeError("the previous batch is not settled yet")
        self._segments = [list(records)] if records else []
        self._failures = 0
        self._not_before = 0.0

    @property
    def settled(self) -> bool:
        """Every record of the batch succeeded or was given up on (and committed)."""
        return not self._segments

    @property
    def pending(self) -> int:
        """Records of the batch not settled yet."""
        return sum(len(s) for s in self._segments)

    def wait_s(self) -> float:
        """How long the backoff before the next retry still lasts (0: invoke now)."""
        return max(0.0, self._not_before - self.clock())

    def next_invocation(self) -> list[R] | None:
        """The records to invoke the function with now; None when settled or backing off.

        Records past ``MaximumRecordAgeInSeconds`` are given up on here, before any call.
        """
        while self._segments:
            if self.wait_s() > 0:
                return None
            segment = self._segments[0]
            expired = self._expired_prefix(segment)
            if not expired:
                return list(segment)
            self._give_up(expired, "RecordAgeExceeded", "record older than the maximum age")
            self._replace_first(segment[len(expired) :])
        return None

    def record_result(self, outcome: Outcome) -> None:
        """Apply the outcome of invoking :meth:`next_invocation`'s records."""
        if not self._segments:
            raise RuntimeError("no invocation is outstanding")
        segment = self._segments[0]
        self.stats.invocations += 1
        if not outcome.failed:
            self.stats.records += len(segment)
            self.commit(segment[-1], "batch done")
            self._replace_first([])
            return
        if outcome.function_error:
            self.stats.function_errors += 1
            if self.policy.bisect_on_function_error and len(segment) > 1:
                self.stats.bisects += 1  # splitting is not a retry
                half = len(segment) // 2
                self._segments[0:1] = [segment[:half], segment[half:]]
                self._failures = 0
                return
        else:
            self.stats.partial_failures += 1
        first = min(outcome.failed)
        if first > 0:  # progress: checkpoint before the lowest failure, retry from there
            self.stats.records += first
            self.commit(segment[first - 1], "before the lowest failure")
            segment = segment[first:]
            self._segments[0] = segment
            self._failures = 0
        self._failures += 1
        if self.policy.exhausted(self._failures):
            self._give_up(segment, "RetryAttemptsExhausted", outcome.error, self._failures - 1)
            self._replace_first([])
            return
        self._not_before = self.clock() + self.policy.backoff_s(self._failures)

    # --- blocking drivers -----------------------------------------------------------------

    def settle(
        self,
        records: Sequence[R],
        invoke: Callable[[Sequence[R]], Outcome],
        sleep: Sleep = time.sleep,
    ) -> None:
        """Settle ``records`` (one batch), sleeping through backoffs."""
        self.start(records)
        while not self.settled:
            batch = self.next_invocation()
            if batch is not None:
                self.record_result(invoke(batch))
            elif not self.settled:
                sleep(self.wait_s())
                self._not_before = 0.0  # slept through (an injected sleep may not move the clock)

    def settle_all(
        self,
        records: Sequence[R],
        invoke: Callable[[Sequence[R]], Outcome],
        sleep: Sleep = time.sleep,
    ) -> None:
        """Settle ``records`` in batches of the mapping's ``BatchSize``."""
        for start in range(0, len(records), self.policy.batch_size):
            self.settle(records[start : start + self.policy.batch_size], invoke, sleep)

    # --- internals ------------------------------------------------------------------------

    def _replace_first(self, rest: list[R]) -> None:
        """The first segment is now ``rest`` (empty: done; the next one starts afresh)."""
        if rest:
            self._segments[0] = rest
            return
        self._segments.pop(0)
        self._failures = 0
        self._not_before = 0.0

    def _give_up(self, records: Sequence[R], condition: str, error: str, retries: int = 0) -> None:
        self.give_up(records, condition, error, retries)  # raises: nothing changes here
        self.stats.sent_to_destination += len(records)
        self.commit(records[-1], condition)

    def _expired_prefix(self, records: Sequence[R]) -> list[R]:
        """Records past ``MaximumRecordAgeInSeconds`` (arrival order: always a prefix)."""
        if self.policy.max_record_age_s < 0:
            return []
        now = self.clock()
        expired = []
        for record in records:
            if now - record.arrived_at <= self.policy.max_record_age_s:
                break
            expired.append(record)
        return expired


# --- the on-failure destination -----------------------------------------------------------


class FailureDestination(Protocol):
    """Where the coordinates of records that were given up on go (an SQS queue on AWS)."""

    def send(self, document: dict[str, Any]) -> None: ...


def failure_document(
    records: Sequence[DeliveredRecord],
    *,
    shard_id: str,
    stream_arn: str,
    function_arn: str,
    condition: str,
    error: str,
    attempts: int,
) -> dict[str, Any]:
    """The document Lambda sends to a Kinesis mapping's on-failure destination.

    Coordinates of the skipped records (shard, first/last sequence number, count), not
    their data: the records stay readable on the stream for its retention period.
    """
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": attempts + 1,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": error,
        },
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(),
        "KinesisBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": records[0].sequence,
            "endSequenceNumber": records[-1].sequence,
            "approximateArrivalOfFirstRecord": _iso(records[0].arrived_at),
            "approximateArrivalOfLastRecord": _iso(records[-1].arrived_at),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def queue_url(sqs: Any, arn: str) -> str:
    """Queue URL of an SQS ARN, through the client's own endpoint."""
    if not arn.startswith("arn:aws:sqs:"):
        raise ValueError(f"only SQS on-failure destinations are supported, not {arn}")
    return str(sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1])["QueueUrl"])


class SqsDestination:
    """The on-failure destination of a mapping: an SQS queue (what the template uses)."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self.sqs = sqs
        self.queue_url = queue_url

    def send(self, document: dict[str, Any]) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(document))
