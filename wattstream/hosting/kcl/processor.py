"""One generic KCL record processor that runs a template function's Lambda handler.

The Java MultiLangDaemon (KCL) owns leases and reads shards; it starts one of these
processes per shard lease and talks to it over stdin/stdout (amazon_kclpy's v3 interface).
Each KCL batch is turned into the Kinesis event Lambda would deliver
(:func:`wattstream.hosting.lambda_model.kinesis_event`) and given to the function's
handler, built by the function's own composition root: the same shell and core as on Lambda.

What Lambda's event source mapping does, this does in-process through the one settler
(:class:`wattstream.hosting.settler.BatchSettler`), from the same mapping settings
(``BatchSize``, ``FunctionResponseTypes``, ``BisectBatchOnFunctionError``,
``MaximumRetryAttempts``, ``MaximumRecordAgeInSeconds``, ``DestinationConfig``):

* a KCL batch is cut into chunks of the mapping's ``BatchSize``, so a handler never sees
  a bigger batch (or a longer invocation) than on Lambda;
* it checkpoints only after a chunk succeeded; on ``batchItemFailures`` it checkpoints just
  before the lowest failed record and retries from there (KCL never redelivers a batch that
  was not checkpointed, until the lease moves, so retrying is this process's job). The
  records after the failed one come again: handlers are idempotent;
* a function error (the handler raised, or replied nonsense) bisects the chunk when
  ``BisectBatchOnFunctionError`` is set; splitting is not a retry;
* retries are bounded (``MaximumRetryAttempts``) with capped exponential backoff; records
  older than ``MaximumRecordAgeInSeconds`` are not retried. Either way the batch's
  coordinates go to the on-failure destination, in the document Lambda sends
  (:func:`wattstream.hosting.settler.failure_document`), and the checkpoint moves past them;
* if the destination cannot take that document, or the processor fails in a way it does
  not understand, the process exits: the daemon then restarts the shard from the last
  checkpoint, so nothing is skipped silently (amazon_kclpy would otherwise log the
  exception and go on with the next batch, and a later checkpoint would skip this one);
* ``leaseLost``: no checkpoint (another worker owns the shard and resumes from ours);
  ``shardEnded``: checkpoint at SHARD_END, so the child shards can start;
  ``shutdownRequested``: checkpoint (every delivered record is settled by then).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from amazon_kclpy.checkpoint_error import CheckpointError
from amazon_kclpy.v3.processor import RecordProcessorBase

from wattstream.hosting.lambda_model import Function, MappingStats
from wattstream.hosting.settler import (
    BatchSettler,
    DeliveredRecord,
    FailureDestination,
    MappingPolicy,
    Outcome,
    SqsDestination,
    failure_document,
    invoke_kinesis,
)

log = logging.getLogger("wattstream.kcl")

Sleep = Callable[[float], None]
Clock = Callable[[], float]

_CHECKPOINT_ATTEMPTS = 5


@dataclass(frozen=True)
class KclRecord(DeliveredRecord):
    """A record as the daemon delivered it (with its KPL sub-sequence number)."""

    sub_sequence: int = 0

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


class LeaseLost(Exception):
    """The daemon refused a checkpoint because another worker owns the shard now."""


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
        policy: MappingPolicy,
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
            self._settler(checkpointer).settle_all(records, self._invoke, self.sleep)
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
        log.info("%s: shard ended (split or merged); checkpointing SHARD_END", self.shard_id)
        self._checkpoint(shard_ended_input.checkpointer, None, "SHARD_END")

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        try:
            self._checkpoint(shutdown_requested_input.checkpointer, None, "shutdown")
        except LeaseLost:
            log.info("%s: lease already gone at shutdown", self.shard_id)

    # --- Lambda's mapping semantics ------------------------------------------------------

    def _settler(self, checkpointer: Any) -> BatchSettler[KclRecord]:
        """Lambda's retry/bisect/give-up semantics, checkpointing through ``checkpointer``."""
        return BatchSettler(
            self.policy,
            commit=lambda record, why: self._checkpoint(checkpointer, record, why),
            give_up=self._give_up,
            stats=self.stats,
            clock=self.clock,
        )

    def _invoke(self, records: Sequence[KclRecord]) -> Outcome:
        return invoke_kinesis(
            self.function,
            records,
            shard_id=self.shard_id,
            stream_arn=self.stream_arn,
            report_item_failures=self.policy.report_item_failures,
        )

    def _give_up(
        self,
        records: Sequence[KclRecord],
        condition: str,
        error: str,
        retries: int,
    ) -> None:
        """Send the records' coordinates to the destination (the settler then checkpoints)."""
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
                records,
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


__all__ = ["FailureDestination", "KclRecord", "LambdaShardProcessor", "SqsDestination"]
