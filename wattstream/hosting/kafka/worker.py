"""A faust worker that runs a template function's Lambda handler on a Kafka topic.

The same generic worker serves every Kinesis-mapped function of ``deploy/template.yaml``
(archive, realtime, gateway readings and forecasts): the topic is the stream name, the
handler is the function's own (built by its composition root on first use, as on Lambda),
and each Kafka batch is handed to it as the Kinesis event Lambda would deliver, one
partition at a time (a partition plays the part of a shard). What Lambda's mapping does
with the reply (``BatchSize``, ``ReportBatchItemFailures``, bisecting, bounded retries,
record age) is :class:`wattstream.hosting.settler.BatchSettler`, shared with the KCL host
and the local runner.

Kafka specifics, and why:

* **position**: a record's Kinesis sequence number is its offset + 1. Offsets only grow
  within a partition and a household stays on one partition (it is the key), so the
  realtime state's "never backwards" check and the archive's stored position work as
  with Kinesis; + 1 because position 0 means "unknown, always apply" to the realtime core.
* **acks**: faust commits the offset of an event once it is acked, and ``take_events``
  acks a batch when the loop asks for the next one, *even if the agent raised*. So the
  agent never raises: a batch is settled (each record handled or dead-lettered) before the
  loop moves on; an unexpected failure is retried with backoff, and a worker stopped while
  a batch cannot be settled exits at once (``os._exit``) instead of acking it. Delivery is
  at least once; the handlers are idempotent.
* **dead letters**: records given up on go to ``<topic>.dlq`` with their original key and
  bytes, and the reason and coordinates as headers. If the dead-letter topic cannot take
  them, the batch is not settled (retried), so nothing is skipped silently.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.retry import backoff_delay
from shared.streams.kafka import KafkaDeadLetters
from wattstream.hosting.lambda_model import Function, MappingStats
from wattstream.hosting.settler import (
    BatchSettler,
    DeliveredRecord,
    MappingPolicy,
    Outcome,
    invoke_kinesis,
)

log = logging.getLogger("wattstream.kafka")

#: Suffix of a topic's dead-letter topic.
DLQ_SUFFIX = ".dlq"
#: Exit status of a worker stopped in the middle of a batch it could not settle.
EXIT_UNSETTLED = 70


def dlq_topic(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"


def shard_id(partition: int) -> str:
    """The ``eventID`` shard part of a partition's records (Lambda: ``shardId-...``)."""
    return f"partition-{partition:06d}"


@dataclass(frozen=True)
class KafkaRecord(DeliveredRecord):
    """One consumed message, with the coordinates the dead letters need."""

    topic: str = ""
    partition: int = 0
    offset: int = 0
    key: bytes | None = None

    @classmethod
    def at(
        cls,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        data: bytes,
        arrived_at: float,
    ) -> KafkaRecord:
        """Sequence number = offset + 1; partition key = the message key (a household)."""
        return cls(
            sequence=str(offset + 1),
            partition_key=key.decode("utf-8", "replace") if key else "",
            data=data,
            arrived_at=arrived_at,
            topic=topic,
            partition=partition,
            offset=offset,
            key=key,
        )

    @classmethod
    def of(cls, message: Any) -> KafkaRecord:
        """From a faust ``Message`` (raw key and value; ``timestamp`` in seconds)."""
        return cls.at(
            str(message.topic),
            int(message.partition),
            int(message.offset),
            message.key,
            message.value if message.value is not None else b"",
            float(message.timestamp or time.time()),
        )


@dataclass
class WorkerStats(MappingStats):
    """The mapping counters plus timing, written to the stats file after every batch."""

    batches: int = 0
    busy_s: float = 0.0
    first_batch_at: float = 0.0
    last_batch_done_at: float = 0.0
    redelivered_skipped: int = 0


class KafkaMappingHost:
    """One template function over Kafka batches, with its mapping's semantics.

    ``settle_batch`` is synchronous (the handlers are): the faust agent runs it in a
    thread so the event loop keeps the consumer's heartbeats going.
    """

    def __init__(
        self,
        function: Function,
        *,
        stream_arn: str,
        policy: MappingPolicy,
        dead_letters: KafkaDeadLetters,
        stats_file: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.function = function
        self.stream_arn = stream_arn
        self.policy = policy
        self.dead_letters = dead_letters
        self.stats_file = stats_file
        self.sleep = sleep
        self.clock = clock
        self.stats = WorkerStats()
        #: (topic, partition) -> highest offset settled by this process.
        self.settled: dict[tuple[str, int], int] = {}

    def settle_batch(self, records: Sequence[KafkaRecord]) -> None:
        """Settle every record, partition by partition in offset order; raises if it cannot."""
        started = time.time()
        self.stats.first_batch_at = self.stats.first_batch_at or started
        partitions: dict[tuple[str, int], list[KafkaRecord]] = {}
        for record in records:
            partitions.setdefault((record.topic, record.partition), []).append(record)
        for (topic, partition), group in partitions.items():
            done = self.settled.get((topic, partition), -1)
            fresh = [r for r in group if r.offset > done]
            self.stats.redelivered_skipped += len(group) - len(fresh)
            self._settler().settle_all(fresh, self._invoker(partition), self.sleep)
        self.stats.batches += 1
        self.stats.last_batch_done_at = time.time()
        self.stats.busy_s += self.stats.last_batch_done_at - started
        self._write_stats()

    def _settler(self) -> BatchSettler[KafkaRecord]:
        return BatchSettler(
            self.policy,
            commit=self._commit,
            give_up=self._give_up,
            stats=self.stats,
            clock=self.clock,
        )

    def _invoker(self, partition: int) -> Callable[[Sequence[KafkaRecord]], Outcome]:
        def invoke(records: Sequence[KafkaRecord]) -> Outcome:
            return invoke_kinesis(
                self.function,
                records,
                shard_id=shard_id(partition),
                stream_arn=self.stream_arn,
                report_item_failures=self.policy.report_item_failures,
            )

        return invoke

    def _commit(self, record: KafkaRecord, why: str) -> None:
        key = (record.topic, record.partition)
        self.settled[key] = max(self.settled.get(key, -1), record.offset)

    def _give_up(
        self, records: Sequence[KafkaRecord], condition: str, error: str, retries: int
    ) -> None:
        """Dead-letter the records: original key and bytes, reason and coordinates."""
        self.dead_letters.send(
            [
                (
                    r.key,
                    r.data,
                    {
                        "wattstream.condition": condition,
                        "wattstream.error": error[:2000],
                        "wattstream.attempts": str(retries + 1),
                        "wattstream.function": self.function.spec.logical_id,
                        "wattstream.topic": r.topic,
                        "wattstream.partition": str(r.partition),
                        "wattstream.offset": str(r.offset),
                        "wattstream.key": r.partition_key,
                        "wattstream.arrived_at": f"{r.arrived_at:.3f}",
                    },
                )
                for r in records
            ]
        )
        log.warning(
            "%s: %d records of %s[%d] dead-lettered (%s: %s)",
            self.function.spec.logical_id,
            len(records),
            records[0].topic,
            records[0].partition,
            condition,
            error,
        )

    def _write_stats(self) -> None:
        if self.stats_file is None:
            return
        tmp = self.stats_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({**asdict(self.stats), "pid": os.getpid()}))
        os.replace(tmp, self.stats_file)


async def settle_or_exit(
    host: KafkaMappingHost, records: list[KafkaRecord], *, max_backoff_s: float = 30.0
) -> None:
    """Settle ``records`` in a thread, retrying failures; never return with them unsettled.

    Returning (or raising) lets faust ack the batch, so this returns only once the batch
    is settled. If the worker is stopped meanwhile, the running attempt is awaited; when
    it did not settle the batch, the process exits without acking (the records come again
    after the restart).
    """
    failures = 0
    while True:
        task = asyncio.ensure_future(asyncio.to_thread(host.settle_batch, records))
        try:
            await asyncio.shield(task)
            return
        except asyncio.CancelledError:
            while not task.done():  # the stop came mid-batch: let the attempt finish
                try:
                    await asyncio.wait({task})
                except asyncio.CancelledError:
                    continue
            if task.cancelled() or task.exception() is not None:
                log.error("stopped with an unsettled batch: exiting without acking it")
                os._exit(EXIT_UNSETTLED)
            raise
        except Exception:
            failures += 1
            log.exception("a batch could not be settled (attempt %d); retrying it", failures)
        try:
            await asyncio.sleep(backoff_delay(failures, base_s=0.5, max_s=max_backoff_s))
        except asyncio.CancelledError:
            log.error("stopped with an unsettled batch: exiting without acking it")
            os._exit(EXIT_UNSETTLED)


@dataclass(frozen=True)
class WorkerConfig:
    """Where the worker reads from, as which consumer group, with which broker timings."""

    bootstrap: str
    topic: str
    group_id: str
    session_timeout_s: float = 10.0
    batching_window_s: float = 0.5
    commit_interval_s: float = 1.0


def build_app(host: KafkaMappingHost, config: WorkerConfig) -> Any:
    """The faust app: one agent reading ``config.topic`` in batches of the mapping's size.

    A new consumer group starts from the earliest offset (the template's
    ``StartingPosition: TRIM_HORIZON``).
    """
    import faust

    app = faust.App(
        config.group_id,
        broker=f"kafka://{config.bootstrap}",
        broker_session_timeout=config.session_timeout_s,
        broker_heartbeat_interval=max(0.5, config.session_timeout_s / 6),
        broker_commit_interval=config.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        store="memory://",
    )
    source = app.topic(
        config.topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    within = max(0.05, config.batching_window_s)

    async def consume(stream: Any) -> None:
        async for events in stream.take_events(host.policy.batch_size, within=within):
            await settle_or_exit(host, [KafkaRecord.of(e.message) for e in events])

    app.agent(source, name=f"{config.group_id}.consume", concurrency=1)(consume)
    return app


def run_app(app: Any, *, loglevel: str = "warn") -> None:
    """Run the faust worker until SIGTERM/SIGINT (it installs its own signal handlers)."""
    from faust import Worker

    Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False).execute_from_commandline()
