"""Helpers that drive the whole pipeline over Kinesis (local runner) or Kafka (faust).

Importable by other suites: :func:`kafka_stack` (from :mod:`testing.tansu`,
which the reliability drills use too) readies a deployed local stack for the Kafka bus,
:func:`start_workers` runs one ``wattstream kafka worker``
subprocess per stream consumer (see :class:`wattstream.local.kafka_bus.WorkerProcess`
for kill -9 / restart), and the readers return what the pipeline produced, comparable
across buses.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from shared.streams.kinesis import KinesisPublisher
from shared.streams.ports import StreamRecord
from testing import kafka_compare as compare
from tests.conftest import APRIL_2007
from wattstream.hosting.template import StackDescription
from wattstream.local.kafka_bus import WorkerProcess
from wattstream.local.runner import EventSourceRunner

#: The template's stream consumers, each a faust worker on the Kafka bus.
CONSUMERS = (
    "ArchiveFunction",
    "RealtimeFunction",
    "GatewayReadingsFunction",
    "GatewayForecastsFunction",
)
#: The first days of the shipped UCI slice, per household, as stream records.
uci_days = functools.partial(compare.uci_days, APRIL_2007)
archive_tables = compare.archive_tables
documents = compare.documents
kafka_messages = compare.kafka_messages
kinesis_messages = compare.kinesis_messages
readings_in = compare.readings_in


def start_workers(
    bootstrap: str, state_dir: Path, functions: Iterable[str] = CONSUMERS
) -> dict[str, WorkerProcess]:
    return {f: WorkerProcess(f, bootstrap, state_dir).start() for f in functions}


def stop_workers(workers: dict[str, WorkerProcess]) -> None:
    for worker in workers.values():
        worker.stop()


def wait_for_records(worker: WorkerProcess, count: int, timeout_s: float = 120.0) -> None:
    """Until the worker has settled ``count`` records (handled or dead-lettered)."""
    worker.wait_until(
        lambda s: s["records"] + s["sent_to_destination"] >= count, timeout_s=timeout_s
    )


def scan(dynamodb: Any, table: str, keep: Callable[[dict[str, Any]], bool] = bool) -> list[Any]:
    items = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        items += [i for i in page["Items"] if keep(i)]
    return items


def run_kinesis_path(
    stack: StackDescription,
    records: list[StreamRecord],
    clients: Callable[[str], Any],
    checkpoint_path: Path,
    functions: Iterable[str] = CONSUMERS,
) -> tuple[EventSourceRunner, Counter[str]]:
    """The records through Kinesis and the local runner; returns it and the forecasts."""
    KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis")).publish(records)
    runner = EventSourceRunner(
        stack,
        clients=clients,
        checkpoint_path=checkpoint_path,
        functions=set(functions),
        idle_sleep_s=0.02,
    )
    runner.drain(timeout_s=240)
    stream = stack.outputs["ForecastsStreamName"]
    return runner, documents(kinesis_messages(clients("kinesis"), stream))


def wait_idle(worker: WorkerProcess, quiet_s: float = 3.0, timeout_s: float = 120.0) -> None:
    """Until the worker has handled a batch and then nothing for ``quiet_s``."""
    worker.wait_until(lambda s: time.time() - s["last_batch_done_at"] > quiet_s, timeout_s)
