"""``wattstream run --bus kafka``: the local stack with the stream consumers on Kafka.

moto still provides S3, DynamoDB and SQS; the local runner keeps the SQS (S3 event)
mappings; each Kinesis-mapped function of the template runs as a faust worker
subprocess on its stream's topic; and every composition root of this process (ingest
API, replay, the S3-triggered functions) publishes to Kafka through ``publisher_for``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from wattstream.hosting.kafka.worker import dlq_topic
from wattstream.kafka.cli import stream_topics, use_kafka_bus
from wattstream.kafka.processes import WorkerProcess
from wattstream.kafka.topics import ensure_topics


def prepare_bus(description: Any, bootstrap: str, partitions: int) -> None:
    """Publish to Kafka from this process; create the stack's topics and DLQs."""
    use_kafka_bus(bootstrap)
    topics = stream_topics(description)
    ensure_topics(bootstrap, topics + [dlq_topic(t) for t in topics], partitions=partitions)


def stream_consumers(description: Any) -> list[str]:
    """Functions with a Kinesis mapping (faust workers on Kafka)."""
    return sorted({m.function_logical_id for m in description.mappings if _kinesis(m)})


def queue_consumers(description: Any) -> set[str]:
    """Functions with a non-Kinesis mapping (S3 events via SQS: the local runner)."""
    return {m.function_logical_id for m in description.mappings if not _kinesis(m)}


def _kinesis(mapping: Any) -> bool:
    return bool(mapping.source_kind == "kinesis")


def start_workers(description: Any, bootstrap: str, state_dir: Path) -> list[WorkerProcess]:
    return [
        WorkerProcess(f, bootstrap, state_dir.resolve(), session_timeout_s=10.0).start()
        for f in stream_consumers(description)
    ]


def wait_quiet(
    workers: list[WorkerProcess],
    description: Any,
    *,
    quiet_s: float = 5.0,
    timeout_s: float = 600.0,
) -> None:
    """Until the readings consumers have handled something and no worker did for ``quiet_s``."""
    readings = description.outputs.get("ReadingsStreamName", "")
    required = {
        m.function_logical_id
        for m in description.mappings
        if _kinesis(m) and m.source_arn.endswith(f"/{readings}")
    }
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for worker in workers:
            if not worker.running:
                raise RuntimeError(f"{worker.function} worker exited; see {worker.log_file}")
        stats = {w.function: w.stats() for w in workers}
        last = max((s.get("last_batch_done_at", 0.0) for s in stats.values()), default=0.0)
        if all(stats.get(f) for f in required) and time.time() - last > quiet_s:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the Kafka workers were still busy after {timeout_s} s")


def summary(workers: list[WorkerProcess]) -> list[str]:
    lines = []
    for worker in workers:
        stats = worker.stats()
        lines.append(
            f"  {worker.function} (faust): {stats.get('invocations', 0)} invocations, "
            f"{stats.get('records', 0)} records, {stats.get('function_errors', 0)} errors, "
            f"{stats.get('sent_to_destination', 0)} dead-lettered"
        )
    return lines
