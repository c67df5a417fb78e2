"""Topics of the Kafka bus: created, with partitions, when missing."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

#: Partitions of a topic this tooling creates (a household's key picks one).
DEFAULT_PARTITIONS = 4


def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    *,
    partitions: int = DEFAULT_PARTITIONS,
    timeout_s: float = 30.0,
) -> None:
    """Create the missing ``topics`` and wait until the broker lists every one."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    wanted = sorted(set(topics))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    missing = [t for t in wanted if t not in existing]
    if missing:
        futures = admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
        for topic, future in futures.items():
            try:
                future.result(timeout_s)
            except KafkaException as error:
                if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise RuntimeError(f"cannot create topic {topic!r}: {error}") from error
    deadline = time.monotonic() + timeout_s
    while True:
        listed = admin.list_topics(timeout=timeout_s).topics
        if all(t in listed and listed[t].partitions for t in wanted):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not listed by {bootstrap}: {wanted}")
        time.sleep(0.1)


def kafka_bus_environment(bootstrap: str) -> dict[str, str]:
    """The variables that make a composition root publish to Kafka (``publisher_for``): a
    function bound to its own environment (``LambdaEntry.bind``) needs them in it."""
    return {"STREAM_BUS": "kafka", "KAFKA_BOOTSTRAP_SERVERS": bootstrap}


def use_kafka_bus(bootstrap: str) -> None:
    """Make this process's own composition roots (built from ``os.environ``: the ingest and
    gateway APIs) publish to Kafka too."""
    os.environ.update(kafka_bus_environment(bootstrap))


def stream_topics(description: object) -> list[str]:
    """Topic names of a stack: its streams (as the consumers and publishers name them)."""
    outputs = getattr(description, "outputs", {})
    return [outputs[k] for k in ("ReadingsStreamName", "ForecastsStreamName") if k in outputs]
