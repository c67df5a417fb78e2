"""One generic KCL record processor that runs a template function's Lambda handler.

The Java MultiLangDaemon (KCL) owns leases and reads shards; it starts one of these
processes per shard lease and talks to it over stdin/stdout (amazon_kclpy's v3 interface).
Each KCL batch is turned into the Kinesis event Lambda would deliver
(:func:`wattstream.local.runner.kinesis_event`) and given to the function's handler, built
by the function's own composition root: the same shell and core as on Lambda.

What Lambda's event source mapping does, this does in-process, from the same mapping
settings (``BatchSize``, ``FunctionResponseTypes``, ``BisectBatchOnFunctionError``,
``MaximumRetryAttempts``, ``MaximumRecordAgeInSeconds``, ``DestinationConfig``):

* a KCL batch is cut into chunks of the mapping's ``BatchSize``, so a handler never sees
  a bigger batch (or a longer invocation) than on Lambda;
* it checkpoints only after a chunk succeeded; on ``batchItemFailures`` it checkpoints just
  before the lowest failed record and retries from there (KCL never redelivers a batch that
  was not checkpointed, until the lease moves, so retrying is this process's job). The
  records after the failed one come again: handlers are idempotent;
* a function error (the handler raised, or replied nonsense) bisects the chunk, as
  ``BisectBatchOnFunctionError`` does; splitting is not a retry;
* retries are bounded (``MaximumRetryAttempts``) with capped exponential backoff; records
  older than ``MaximumRecordAgeInSeconds`` are not retried. Either way the records'
  coordinates go to the on-failure destination, in the document Lambda sends
  (:func:`wattstream.local.runner.failure_document`), and the checkpoint moves past them;
* if the destination cannot take that document, or the processor fails in a way it does
  not understand, the process exits: the daemon then restarts the shard from the last
  checkpoint, so nothing is skipped silently (amazon_kclpy would otherwise log the
  exception and go on with the next batch, and a later checkpoint would skip this one);
* ``leaseLost``: no checkpoint (another worker owns the shard and resumes from ours);
  ``shardEnded``: checkpoint at SHARD_END, so the child shards can start;
  ``shutdownRequested``: checkpoint (every delivered record is settled by then).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from amazon_kclpy.checkpoint_error import CheckpointError
from amazon_kclpy.v3.processor import RecordProcessorBase

from wattstream.local.runner import (
    Function,
    MappingStats,
    batch_item_failures,
    failure_document,
    kinesis_event,
)
from wattstream.local.stack import MappingSpec

log = logging.getLogger("wattstream.kcl")

Sleep = Callable[[float], None]
Clock = Callable[[], float]

_CHECKPOINT_ATTEMPTS = 5


class FailureDestination(Protocol):
    """Where the coordinates of records that were given up on go (an SQS queue on AWS)."""

    def send(self, document: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """The mapping's failure settings, with Lambda's meaning (-1: no limit)."""

    batch_size: int = 100
    report_item_failures: bool = True
    bisect_on_function_error: bool = False
    max_retry_attempts: int = -1
    max_record_age_s: int = -1
    base_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    @classmethod
    def of(cls, mapping: MappingSpec, **overrides: Any) -> RetryPolicy:
        """The policy of a template event source mapping (properties as CloudFormation has them)."""
        props = mapping.properties
        values: dict[str, Any] = {
            "batch_size": int(props.get("BatchSize", 100)),
            "report_item_failures": "ReportBatchItemFailures"
            in props.get("FunctionResponseTypes", []),
            "bisect_on_function_error": str(props.get("BisectBatchOnFunctionError", False)).lower()
            == "true",
            "max_retry_attempts": int(props.get("MaximumRetryAttempts", -1)),
            "max_record_age_s": int(props.get("MaximumRecordAgeInSeconds", -1)),
        }
        return cls(**{**values, **overrides})

    def exhausted(self, failures: int) -> bool:
        """``failures`` failed invocations: is that past the first try plus the retries?"""
        return self.max_retry_attempts >= 0 and failures > self.max_retry_attempts

    def backoff_s(self, failures: int) -> float:
        return min(self.max_backoff_s, self.base_backoff_s * 2 ** min(failures - 1, 30))


@dataclass(frozen=True)
class KclRecord:
    """A record as the daemon delivered it, in the GetRecords shape the event builder takes."""

    sequence: str
    sub_sequence: int
    partition_key: str
    data: bytes
    arrived_at: float

    @classmethod
    def of(cls, record: Any) -> KclRecord:
        """From :class:`amazon_kclpy.messages.Record` (``approximateArrivalTimestamp`` in ms)."""
        return cls(
            sequence=str(record.sequence_number),
            sub_sequence=int(record.sub_sequence_number or 0),
            partition_key=str(record.partition_key),
            data=record.binary_data,
            arrived_at=record.timestamp_millis / 1000.0,
        )

    def as_get_records(self) -> dict[str, Any]:
        return {
            "PartitionKey": self.partition_key,
            "SequenceNumber": self.sequence,
            "Data": self.data,
            "ApproximateArrivalTimestamp": self.arrived_at,
        }


class LeaseLost(Exception):
    """The daemon refused a checkpoint because another worker owns the shard now."""


class _Outcome:
    """One invocation: which records of the chunk failed (indexes), and why."""

    def __init__(self, failed: list[int], error: str, function_error: bool) -> None:
        self.failed = failed
        self.error = error
        self.function_error = function_error


class LambdaShardProcessor(RecordProcessorBase):  # type: ignore[misc]
    """The KCL v3 record processor of one shard, running one template function's handler.

    ``function`` is the handler bound to its template spec (environment, ARN, timeout),
    exactly what the local runner invokes; ``stream_arn`` becomes the events'
    ``eventSourceARN``. ``sleep`` and ``clock`` are injected so tests never wait.
    """

    def __init__(
        self,
        function: Function,
        *,
        stream_arn: str,
        policy: RetryPolicy,
        destination: FailureDestination | None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.time,
    ) -> None:
        self.function = function
        self.stream_arn = stream_arn
        self.policy = policy
        self.destination = destination
        self.sleep = sleep
        self.clock = clock
        self.shard_id = ""
        self.stats = MappingStats()

    # --- the v3 interface ----------------------------------------------------------------

    def initialize(self, initialize_input: Any) -> None:
        self.shard_id = str(initialize_input.shard_id)
        log.info(
            "%s: shard %s from %s",
            self.function.spec.logical_id,
            self.shard_id,
            initialize_input.sequence_number or "the mapping's initial position",
        )

    def process_records(self, process_records_input: Any) -> None:
        self.stats.millis_behind_latest = int(process_records_input.millis_behind_latest or 0)
        records = [KclRecord.of(r) for r in process_records_input.records]
        checkpointer = process_records_input.checkpointer
        try:
            for start in range(0, len(records), self.policy.batch_size):
                self._settle(records[start : start + self.policy.batch_size], checkpointer)
        except LeaseLost:
            log.warning("%s: lease lost mid-batch; the new owner resumes", self.shard_id)
        except SystemExit:
            raise
        except Exception as error:  # never let amazon_kclpy swallow it and move on
            log.exception("%s: unexpected failure; exiting so the shard restarts", self.shard_id)
            raise SystemExit(f"record processor failed: {error}") from error

    def lease_lost(self, lease_lost_input: Any) -> None:
        log.info("%s: lease lost; not checkpointing", self.shard_id)

    def shard_ended(self, shard_ended_input: Any) -> None:
        self._checkpoint(shard_ended_input.checkpointer, None, "SHARD_END")

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        try:
            self._checkpoint(shutdown_requested_input.checkpointer, None, "shutdown")
        except LeaseLost:
            log.info("%s: lease already gone at shutdown", self.shard_id)

    # --- Lambda's mapping semantics ------------------------------------------------------

    def _settle(self, records: Sequence[KclRecord], checkpointer: Any) -> None:
        """Handle ``records`` until each succeeded or went to the destination; checkpoint."""
        pending = list(records)
        failures = 0
        while pending:
            expired = self._expired_prefix(pending)
            if expired:
                self._give_up(
                    expired,
                    "RecordAgeExceeded",
                    "record older than the maximum age",
                    failures,
                    checkpointer,
                )
                pending = pending[len(expired) :]
                continue
            outcome = self._invoke(pending)
            if not outcome.failed:
                self.stats.records += len(pending)
                self._checkpoint(checkpointer, pending[-1], "batch done")
                return
            if outcome.function_error:
                self.stats.function_errors += 1
                if self.policy.bisect_on_function_error and len(pending) > 1:
                    self.stats.bisects += 1
                    half = len(pending) // 2
                    self._settle(pending[:half], checkpointer)
                    self._settle(pending[half:], checkpointer)
                    return
            else:
                self.stats.partial_failures += 1
            first, last = outcome.failed[0], outcome.failed[-1]
            if first > 0:  # progress: keep it, retry from the lowest failure
                self.stats.records += first
                self._checkpoint(checkpointer, pending[first - 1], "before the lowest failure")
                pending, last, failures = pending[first:], last - first, 0
            failures += 1
            if self.policy.exhausted(failures):
                self._give_up(
                    pending[: last + 1],
                    "RetryAttemptsExhausted",
                    outcome.error,
                    failures - 1,
                    checkpointer,
                )
                if len(pending) > last + 1:  # these succeeded in the last attempt
                    self.stats.records += len(pending) - last - 1
                    self._checkpoint(checkpointer, pending[-1], "after the failed records")
                return
            self.sleep(self.policy.backoff_s(failures))

    def _expired_prefix(self, records: Sequence[KclRecord]) -> list[KclRecord]:
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

    def _invoke(self, records: Sequence[KclRecord]) -> _Outcome:
        event = kinesis_event(
            [r.as_get_records() for r in records],
            shard_id=self.shard_id,
            stream_arn=self.stream_arn,
            function_arn=self.function.spec.arn,
            region=self.function.spec.arn.split(":")[3],
        )
        result = self.function.invoke(event)
        self.stats.invocations += 1
        everything = list(range(len(records)))
        if result.failed:
            return _Outcome(everything, str(result.error), function_error=True)
        if not self.policy.report_item_failures:
            return _Outcome([], "", function_error=False)
        failed = batch_item_failures(result.response, [r.sequence for r in records])
        if failed is None:
            error = "invalid batchItemFailures in the function response"
            return _Outcome(everything, error, function_error=True)
        indexes = [i for i, r in enumerate(records) if r.sequence in failed]
        return _Outcome(indexes, "partial batch failure", function_error=False)

    def _give_up(
        self,
        records: Sequence[KclRecord],
        condition: str,
        error: str,
        retries: int,
        checkpointer: Any,
    ) -> None:
        """Send the records' coordinates to the destination, then checkpoint past them."""
        self.stats.sent_to_destination += len(records)
        if self.destination is None:
            log.error(
                "%s: %d records of %s DISCARDED (%s: %s; no OnFailure destination)",
                self.function.spec.logical_id,
                len(records),
                self.shard_id,
                condition,
                error,
            )
        else:
            document = failure_document(
                [r.as_get_records() for r in records],
                shard_id=self.shard_id,
                stream_arn=self.stream_arn,
                function_arn=self.function.spec.arn,
                condition=condition,
                error=error,
                attempts=retries,
            )
            try:
                self.destination.send(document)
            except Exception as failure:  # cannot record the loss: do not skip the records
                log.exception("%s: the on-failure destination failed; exiting", self.shard_id)
                raise SystemExit(f"on-failure destination failed: {failure}") from failure
            log.warning(
                "%s: %d records of %s sent to the on-failure destination (%s: %s)",
                self.function.spec.logical_id,
                len(records),
                self.shard_id,
                condition,
                error,
            )
        self._checkpoint(checkpointer, records[-1], condition)

    def _checkpoint(self, checkpointer: Any, record: KclRecord | None, why: str) -> None:
        """Checkpoint at ``record`` (None: the farthest delivered, or SHARD_END at shard end).

        ``ShutdownException``: the lease is gone (:class:`LeaseLost`). Throttling is retried
        with backoff. ``InvalidStateException`` (the daemon's lease state is unusable) ends
        the process, as the KCL documents. Anything else after the retries is logged: the
        records were handled, so the worst case is that they are delivered again.
        """
        sequence = record.sequence if record else None
        sub_sequence = record.sub_sequence if record else None
        for attempt in range(1, _CHECKPOINT_ATTEMPTS + 1):
            try:
                checkpointer.checkpoint(sequence, sub_sequence)
                log.debug("%s: checkpoint %s/%s (%s)", self.shard_id, sequence, sub_sequence, why)
                return
            except CheckpointError as error:
                reason = str(error.value)
                if reason == "ShutdownException":
                    raise LeaseLost(reason) from error
                if reason == "InvalidStateException":
                    raise SystemExit(f"checkpoint impossible: {reason}") from error
                log.warning(
                    "%s: checkpoint failed (%s), attempt %d", self.shard_id, reason, attempt
                )
                if attempt < _CHECKPOINT_ATTEMPTS:
                    self.sleep(self.policy.backoff_s(attempt))
        log.error(
            "%s: no checkpoint at %s after %d attempts",
            self.shard_id,
            sequence,
            _CHECKPOINT_ATTEMPTS,
        )


class SqsDestination:
    """The on-failure destination of a mapping: an SQS queue (what the template uses)."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self.sqs = sqs
        self.queue_url = queue_url

    def send(self, document: dict[str, Any]) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(document))
