"""Test harness: a saved local stack rewritten for the Kafka bus (``kafka_stack``).

The brokers themselves are local tooling: :mod:`wattstream.local.tansu` and
:mod:`wattstream.local.apache_kafka`.
"""

from __future__ import annotations

from pathlib import Path

from wattstream.hosting.kafka.worker import dlq_topic
from wattstream.hosting.template import StackDescription
from wattstream.kafka.topics import ensure_topics, stream_topics
from wattstream.local.tansu import TansuBroker

__all__ = ["TansuBroker", "kafka_stack"]


def kafka_stack(stack: StackDescription, bootstrap: str, state_dir: Path) -> StackDescription:
    """Save the stack where workers find it and create its topics (and DLQs)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    stack.save(state_dir / "stack.json")
    topics = stream_topics(stack)
    ensure_topics(bootstrap, topics + [dlq_topic(t) for t in topics])
    return stack
