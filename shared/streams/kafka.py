"""Kafka adapter of the stream ports (any Kafka-compatible broker).

The topic is the stream name the composition roots already get (``READINGS_STREAM_NAME``,
``FORECASTS_STREAM_NAME``), the message key is the partition key: a household stays on
one partition, in order. The producer is idempotent with ``acks=all``, so a retried
produce can neither duplicate nor reorder a household's records. :meth:`publish` is
synchronous like the Kinesis one: it flushes and raises :class:`PublishError` carrying
the records that were not acknowledged, so nothing is lost silently.

``confluent_kafka`` is imported when a publisher is built, never at import time, so the
Lambda packages (Kinesis only) do not need it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from shared.streams.ports import PublishError, PublishReport, StreamRecord

#: librdkafka settings of every producer: ordered, not duplicated, all replicas acked.
#: ``murmur2_random`` is the Java client's partitioner, so every client agrees on where a
#: household's records go.
PRODUCER_DEFAULTS: Mapping[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "partitioner": "murmur2_random",
    "message.max.bytes": 1_048_576,
}

#: How long one publish call waits for the broker's acknowledgements.
FLUSH_TIMEOUT_S = 30.0


def make_producer(bootstrap_servers: str, **overrides: Any) -> Any:
    """A confluent-kafka producer with :data:`PRODUCER_DEFAULTS` (built in composition roots)."""
    from confluent_kafka import Producer

    config = {
        "bootstrap.servers": bootstrap_servers,
        # librdkafka's own log lines go through logging (served by poll/flush), not stderr.
        "logger": logging.getLogger("librdkafka"),
        **PRODUCER_DEFAULTS,
        **overrides,
    }
    return Producer(config)


class _Deliveries:
    """Collects the per-message delivery reports of one publish call."""

    def __init__(self, count: int) -> None:
        self.pending = set(range(count))
        self.errors: dict[int, str] = {}

    def callback(self, index: int) -> Any:
        def report(error: Any, _message: Any) -> None:
            self.pending.discard(index)
            if error is not None:
                self.errors[index] = str(error.name() if hasattr(error, "name") else error)

        return report


def produce_all(
    producer: Any,
    topic: str,
    messages: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]],
    *,
    flush_timeout_s: float = FLUSH_TIMEOUT_S,
) -> dict[int, str]:
    """Produce ``(key, value, headers)`` messages and wait: index -> error of each failure.

    A message still unacknowledged after the flush timeout counts as failed ("timeout").
    """
    deliveries = _Deliveries(len(messages))
    for index, (key, value, headers) in enumerate(messages):
        while True:
            try:
                producer.produce(
                    topic,
                    key=key,
                    value=value,
                    headers=headers,
                    on_delivery=deliveries.callback(index),
                )
                break
            except BufferError:  # local queue full: let deliveries drain, then go on
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(flush_timeout_s)
    errors = dict(deliveries.errors)
    for index in deliveries.pending:
        errors.setdefault(index, "timeout")
    return errors


class _TopicWriter:
    """Writes to one topic through an injected confluent-kafka producer."""

    def __init__(
        self, topic: str, producer: Any, *, flush_timeout_s: float = FLUSH_TIMEOUT_S
    ) -> None:
        self.topic = topic
        self._producer = producer
        self._flush_timeout_s = flush_timeout_s


class KafkaPublisher(_TopicWriter):
    """Publishes records to one topic (the stream's name), keyed by partition key."""

    def publish(self, records: Sequence[StreamRecord]) -> PublishReport:
        """Write all records (in order per key) or raise PublishError with the failed ones."""
        for record in records:
            if not record.partition_key:
                raise ValueError("a record needs a partition key (its household)")
        errors = produce_all(
            self._producer,
            self.topic,
            [(r.partition_key.encode(), r.data, None) for r in records],
            flush_timeout_s=self._flush_timeout_s,
        )
        if errors:
            failed = sorted(errors)
            raise PublishError(
                f"{len(failed)} of {len(records)} records were not acknowledged by topic "
                f"{self.topic!r} (errors: {sorted(set(errors.values()))})",
                failed=[records[i] for i in failed],
                error_codes=[errors[i] for i in failed],
            )
        return PublishReport(
            records=len(records),
            bytes=sum(len(r.data) + len(r.partition_key.encode()) for r in records),
            requests=1 if records else 0,  # one flush; librdkafka batches the requests
        )


class DeadLetterError(RuntimeError):
    """The dead-letter topic did not acknowledge a record: the caller must not skip it."""


class KafkaDeadLetters(_TopicWriter):
    """Writes records that were given up on to a dead-letter topic, original bytes intact.

    The value is the original value, the key the original key; the reason and the
    coordinates (topic, partition, offset, ...) travel as headers, so the record can be
    inspected and replayed as it was.
    """

    def send(self, letters: Sequence[tuple[bytes | None, bytes, Mapping[str, str]]]) -> None:
        """Send ``(key, value, headers)`` letters, or raise :class:`DeadLetterError`."""
        errors = produce_all(
            self._producer,
            self.topic,
            [(k, v, [(name, text.encode()) for name, text in h.items()]) for k, v, h in letters],
            flush_timeout_s=self._flush_timeout_s,
        )
        if errors:
            raise DeadLetterError(
                f"{len(errors)} of {len(letters)} dead letters not acknowledged by "
                f"{self.topic!r}: {sorted(set(errors.values()))}"
            )
