"""Kafka benchmark: readings/s through the realtime consumer on faust/Kafka vs Lambda.

``python -m bench kafka [--source FILE] [--days N] [--households N] [--per-record N]``

The same real readings (the first ``--days`` UTC days of the UCI file, copied for each
household) go through the template's ``RealtimeFunction`` twice, in the same run:

* **Lambda path**: published to the readings stream of a local stack (moto Kinesis) and
  drained by the local event-source runner (Lambda's poller, in-process);
* **Kafka path**: published to the readings topic of a broker on loopback (``--broker``:
  Apache Kafka from ``make kafka`` by default, or ``tansu``) and consumed by one
  ``wattstream kafka worker RealtimeFunction`` (faust) subprocess. ``broker`` in the JSON
  names the broker and its version.

Both consume a backlog that was published before they start; both are timed from the
start of the first handler invocation to the end of the last (so the handler's cold
start, the model load, counts in both; the consumer group's join does not).
``parity`` is true when both published the same set of forecast documents (and at least
one).

Records hold ``--per-record`` readings (default 5, i.e. 5 minutes): a consumer batch of
500 records then never holds more than 48 h of one household, the realtime core's
catch-up limit. With bigger records a backlog batch can hold more; the core then
forecasts only the newest 48 h of steps of that batch (the older ones are counted as
superseded), so the forecasts would depend on where each bus cut its batches, and the
two paths could not be compared document by document.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from shared.streams.kafka import KafkaPublisher, make_producer
from shared.streams.kinesis import KinesisPublisher
from testing.kafka_compare import (
    documents,
    kafka_messages,
    kinesis_messages,
    readings_in,
    uci_days,
)
from wattstream.hosting.kafka.worker import dlq_topic
from wattstream.hosting.lambda_model import resolve_handler
from wattstream.kafka.topics import ensure_topics, stream_topics
from wattstream.local.apache_kafka import BROKERS, local_broker
from wattstream.local.kafka_bus import WorkerProcess
from wattstream.local.runner import EventSourceRunner
from wattstream.local.server import EmbeddedAws, client_factory, provision

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "template.yaml"
APRIL_2007 = ROOT / "data" / "uci_household_power_consumption_2007-04.txt.gz"
REGION = "us-east-1"
FUNCTION = "RealtimeFunction"


class _Timed:
    """A handler wrapper noting when the first invocation started and the last ended."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.first = self.last = 0.0

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.first = self.first or time.time()
        try:
            return self.handler(event, context)
        finally:
            self.last = time.time()


class _TimedEntry:
    """A shell entry (``bind(environment)``) whose bound handler is timed by ``timed``."""

    def __init__(self, entry: Any) -> None:
        self.entry = entry
        self.timed = _Timed(None)

    def bind(self, environment: Any) -> _Timed:
        self.timed.handler = self.entry.bind(environment)
        return self.timed

    def reset(self) -> None:
        self.entry.reset()


def _lambda_path(stack: Any, clients: Any, records: list[Any], state: Path) -> float:
    KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis")).publish(records)
    entry = resolve_handler(stack.functions[FUNCTION], TEMPLATE.parent)
    wrapped = _TimedEntry(entry) if hasattr(entry, "bind") else _Timed(entry)
    runner = EventSourceRunner(
        stack,
        clients=clients,
        checkpoint_path=state / "checkpoints.json",
        handlers={FUNCTION: wrapped},
        functions={FUNCTION},
        idle_sleep_s=0.01,
    )
    runner.drain(timeout_s=1800, quiet_rounds=2)
    stats = runner.stats()
    assert sum(s.records for s in stats.values()) == len(records), stats
    timed = wrapped.timed if isinstance(wrapped, _TimedEntry) else wrapped
    return timed.last - timed.first


def _kafka_path(
    stack: Any, bootstrap: str, records: list[Any], state: Path
) -> tuple[float, dict[str, Any]]:
    state.mkdir(parents=True, exist_ok=True)
    stack.save(state / "stack.json")
    topics = stream_topics(stack)
    ensure_topics(bootstrap, topics + [dlq_topic(t) for t in topics])
    topic = stack.outputs["ReadingsStreamName"]
    KafkaPublisher(topic, make_producer(bootstrap)).publish(records)
    with WorkerProcess(FUNCTION, bootstrap, state) as worker:
        stats = worker.wait_until(
            lambda s: s["records"] + s["sent_to_destination"] >= len(records), timeout_s=1800
        )
    return stats["last_batch_done_at"] - stats["first_batch_at"], stats


def run(
    source: Path = APRIL_2007,
    *,
    days: int = 2,
    households: int = 4,
    per_record: int = 5,
    broker_kind: str = "apache-kafka",
) -> dict[str, Any]:
    names = [f"uci-{i:03d}" for i in range(households)]
    records = uci_days(source, days, names, per_record=per_record)
    readings = readings_in(records)
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedAws() as aws,
        local_broker(
            broker_kind, Path(tmp) / "broker.log", work_dir=Path(tmp) / "broker"
        ) as broker,
    ):
        broker_name = broker.name
        clients = client_factory(aws.endpoint_url, REGION)
        stacks = [
            provision(TEMPLATE, endpoint_url=aws.endpoint_url, region=REGION, stack_name=name)
            for name in ("bench-lambda", "bench-kafka")
        ]
        lambda_s = _lambda_path(stacks[0], clients, records, Path(tmp))
        print(f"lambda path: {readings:,} readings in {lambda_s:.2f} s", flush=True)
        kafka_s, stats = _kafka_path(stacks[1], broker.bootstrap, records, Path(tmp) / "kafka")
        print(f"kafka path: {readings:,} readings in {kafka_s:.2f} s", flush=True)
        lambda_docs = documents(
            kinesis_messages(clients("kinesis"), stacks[0].outputs["ForecastsStreamName"])
        )
        kafka_docs = documents(
            m.value()
            for m in kafka_messages(broker.bootstrap, stacks[1].outputs["ForecastsStreamName"])
        )
    kafka_rate, lambda_rate = readings / kafka_s, readings / lambda_s
    return {
        "benchmark": "kafka",
        "broker": broker_name,
        "readings": readings,
        "records": len(records),
        "households": households,
        "kafka_readings_per_s": round(kafka_rate, 1),
        "lambda_path_readings_per_s": round(lambda_rate, 1),
        "ratio": round(kafka_rate / lambda_rate, 3),
        "parity": bool(lambda_docs) and set(lambda_docs) == set(kafka_docs),
        "forecasts": len(lambda_docs),
        "kafka_forecast_duplicates": sum(kafka_docs.values()) - len(kafka_docs),
        "forecasts_only_lambda": len(set(lambda_docs) - set(kafka_docs)),
        "forecasts_only_kafka": len(set(kafka_docs) - set(lambda_docs)),
        "kafka_batches": stats["batches"],
        "kafka_dead_lettered": stats["sent_to_destination"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench kafka", description=__doc__)
    parser.add_argument("--source", type=Path, default=APRIL_2007)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--households", type=int, default=8)
    parser.add_argument("--per-record", type=int, default=5)
    parser.add_argument("--broker", choices=BROKERS, default="apache-kafka")
    args = parser.parse_args(argv)
    result = run(
        args.source,
        days=args.days,
        households=args.households,
        per_record=args.per_record,
        broker_kind=args.broker,
    )
    print(
        f"realtime consumer: faust/Kafka {result['kafka_readings_per_s']:,.0f} readings/s, "
        f"Lambda path {result['lambda_path_readings_per_s']:,.0f} readings/s "
        f"(ratio {result['ratio']}), parity {result['parity']}"
    )
    print(json.dumps(result))
    return 0
