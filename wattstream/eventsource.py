"""Lambda's Kinesis event-source-mapping semantics, for hosts that run handlers themselves.

The KCL record processor (:mod:`wattstream.kcl.processor`) and the Kafka worker
(:mod:`wattstream.kafka.worker`) both receive ordered records of one shard or partition,
hand them to a template function's Lambda handler as a Kinesis event, and must then do
what Lambda's mapping does with the reply. That logic lives here, once:

* the mapping's settings (:class:`RetryPolicy`: ``BatchSize``, ``ReportBatchItemFailures``,
  ``BisectBatchOnFunctionError``, ``MaximumRetryAttempts``, ``MaximumRecordAgeInSeconds``);
* :func:`invoke_kinesis`: one invocation and what failed in it (a function error, or the
  ``batchItemFailures`` of a partial reply; a malformed reply fails the whole batch);
* :class:`BatchSettler`: retry from the lowest failed record, bisect on function errors
  (splitting is not a retry), bounded retries with capped exponential backoff, expired
  records given up on, and a commit after each settled prefix.

Where a position is committed and where given-up records go is the host's business
(KCL checkpoints and an SQS destination; Kafka offsets and a dead-letter topic): the
settler calls the host's ``commit`` and ``give_up``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from wattstream.local.runner import Function, MappingStats, batch_item_failures, kinesis_event
from wattstream.local.stack import MappingSpec

__all__ = ["BatchSettler", "DeliveredRecord", "Outcome", "RetryPolicy", "invoke_kinesis"]

Sleep = Callable[[float], None]
Clock = Callable[[], float]


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
class DeliveredRecord:
    """A record as a host received it, in the GetRecords shape the event builder takes."""

    sequence: str
    partition_key: str
    data: bytes
    arrived_at: float

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
    """One invocation: which records of the batch failed (indexes), and why."""

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

    ``invoke(records)`` runs the handler; ``commit(record, why)`` records that everything up
    to ``record`` is settled; ``give_up(records, condition, error, retries)`` must put the
    records somewhere durable (or raise: then nothing after them is committed).
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        invoke: Callable[[Sequence[R]], Outcome],
        commit: Callable[[R, str], None],
        give_up: Callable[[Sequence[R], str, str, int], None],
        stats: MappingStats,
        sleep: Sleep = time.sleep,
        clock: Clock = time.time,
    ) -> None:
        self.policy = policy
        self.invoke = invoke
        self.commit = commit
        self.give_up = give_up
        self.stats = stats
        self.sleep = sleep
        self.clock = clock

    def settle_all(self, records: Sequence[R]) -> None:
        """Settle ``records`` in chunks of the mapping's ``BatchSize``."""
        for start in range(0, len(records), self.policy.batch_size):
            self.settle(records[start : start + self.policy.batch_size])

    def settle(self, records: Sequence[R]) -> None:
        """Handle ``records`` until each succeeded or was given up on; commit as it goes."""
        pending = list(records)
        failures = 0
        while pending:
            expired = self._expired_prefix(pending)
            if expired:
                self._give_up(
                    expired, "RecordAgeExceeded", "record older than the maximum age", failures
                )
                pending = pending[len(expired) :]
                continue
            outcome = self.invoke(pending)
            self.stats.invocations += 1
            if not outcome.failed:
                self.stats.records += len(pending)
                self.commit(pending[-1], "batch done")
                return
            if outcome.function_error:
                self.stats.function_errors += 1
                if self.policy.bisect_on_function_error and len(pending) > 1:
                    self.stats.bisects += 1
                    half = len(pending) // 2
                    self.settle(pending[:half])
                    self.settle(pending[half:])
                    return
            else:
                self.stats.partial_failures += 1
            first, last = outcome.failed[0], outcome.failed[-1]
            if first > 0:  # progress: keep it, retry from the lowest failure
                self.stats.records += first
                self.commit(pending[first - 1], "before the lowest failure")
                pending, last, failures = pending[first:], last - first, 0
            failures += 1
            if self.policy.exhausted(failures):
                self._give_up(
                    pending[: last + 1], "RetryAttemptsExhausted", outcome.error, failures - 1
                )
                if len(pending) > last + 1:  # these succeeded in the last attempt
                    self.stats.records += len(pending) - last - 1
                    self.commit(pending[-1], "after the failed records")
                return
            self.sleep(self.policy.backoff_s(failures))

    def _give_up(self, records: Sequence[R], condition: str, error: str, retries: int) -> None:
        self.stats.sent_to_destination += len(records)
        self.give_up(records, condition, error, retries)
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
