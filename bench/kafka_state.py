"""Where should the realtime window state live on the Kafka path: a faust Table or DynamoDB?

``python -m bench kafka_state [--records N] [--households N] [--broker apache-kafka|tansu]``

One faust worker subprocess consumes a readings topic (4 partitions, key = household) in
batches, loads each household's :class:`WindowState`, applies the batch and saves it back,
with the state in one of two homes, same records, same run:

* ``dynamodb``: the realtime service's own :class:`DynamoStateStore` (conditional writes on
  the stream position) on a moto table, as the Kafka workers do today;
* ``table``: a faust Table (memory store, changelog topic co-partitioned with the readings
  topic); the batch's changelog writes are flushed before the batch is acked, and a state
  is only replaced by one at a later position (the same rule as the DynamoDB condition).

The update is a stand-in for the realtime core (the store is what is measured): a state's
``position`` becomes the record's offset + 1 and ``late_ignored`` counts the records
applied, so a lost record (count too low) or one applied twice (too high) shows exactly.
The state's bytes have the size of a real 15-minute model window.

Per store: ``*_records_per_s`` on a backlog (first batch start to last batch end), then
the crash drill: the backlog again on a fresh group, the worker ``kill -9`` twice
mid-stream and restarted (the Table recovers from its changelog, which needs correct end
offsets), and every household's final state checked: ``*_lost`` and ``*_duplicated``
count records missing from / applied twice to the final states (0 and 0 is correct).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

STORES = ("dynamodb", "table")
TABLE = "realtime-state"
REGION = "us-east-1"


def _window() -> Any:
    from services.realtime.core.window import WindowConfig

    return WindowConfig(resolution_s=900, input_steps=96)


# ----------------------------------------------------------------------------- worker


def _apply(state: Any, records: list[tuple[int, bytes]]) -> Any:
    """The stand-in update: records past the state's position move it and are counted.

    A record delivered twice in one batch counts once (the realtime core drops such
    duplicates by position too); the worker counts those deliveries apart.
    """
    fresh = sorted({offset for offset, _ in records if offset + 1 > state.position})
    if not fresh:
        return None
    return state.replace(position=max(fresh) + 1, late_ignored=state.late_ignored + len(fresh))


def worker(store: str, bootstrap: str, topic: str, group: str, stats: Path, aws: str) -> None:
    """The faust worker of one store (``python -m bench.kafka_state worker ...``)."""
    import faust

    from services.realtime.core.window import WindowState

    config = _window()
    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        store="memory://",
        topic_partitions=4,
    )
    source = app.topic(
        topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    table = app.Table(TABLE, partitions=4, key_type=bytes, value_type=bytes)
    dynamo = None
    if store == "dynamodb":
        from services.realtime.adapters.state_store import DynamoStateStore
        from wattstream.local.server import client_factory

        dynamo = DynamoStateStore(group, client_factory(aws, REGION)("dynamodb"))
    counters = {"records": 0, "batches": 0, "first": 0.0, "last": 0.0, "fresh": 0, "twice": 0}
    final: dict[str, list[int]] = {}

    def load(households: list[str]) -> dict[str, Any]:
        if dynamo is not None:
            return dict(dynamo.load(households).states)
        found = {h: table.data.get(h.encode()) for h in households}
        return {h: WindowState.from_bytes(v) for h, v in found.items() if v is not None}

    async def consume(stream: Any) -> None:
        async for events in stream.take_events(500, within=0.2):
            started = time.time()
            counters["first"] = counters["first"] or started
            groups: dict[str, list[tuple[int, bytes]]] = {}
            partition_of: dict[str, int] = {}
            coordinates = {(e.message.partition, e.message.offset) for e in events}
            counters["twice"] += len(events) - len(coordinates)
            for event in events:
                household = event.message.key.decode()
                groups.setdefault(household, []).append((event.message.offset, event.value))
                partition_of[household] = event.message.partition
            if dynamo is not None:
                states = await asyncio.to_thread(load, list(groups))
            else:
                states = load(list(groups))
            updated = []
            for household, records in groups.items():
                state = states.get(household)
                if state is None:  # a household seen for the first time (or state lost)
                    counters["fresh"] += 1
                    state = WindowState.fresh(household, config)
                new = _apply(state, records)
                if new is not None:
                    updated.append(new)
                    final[household] = [new.position, new.late_ignored]
            if dynamo is not None:
                report = await asyncio.to_thread(dynamo.save, updated)
                if report.failed:
                    raise RuntimeError(f"state writes failed: {report.failed}")
            else:
                for new in updated:
                    key, value = new.household_id.encode(), new.to_bytes()
                    table.data[key] = value
                    table.send_changelog(partition_of[new.household_id], key, value)
                await app.producer.flush()  # the changelog holds the batch before its ack
            counters["records"] += len(events)
            counters["batches"] += 1
            counters["last"] = time.time()
            write_stats()

    def write_stats() -> None:
        """Counters and states: the whole table once recovered, else what this process wrote."""
        states = final
        if dynamo is None and app.tables.recovery.completed.is_set():
            states = {}
            for key, value in list(table.data.items()):
                state = WindowState.from_bytes(value)
                states[key.decode()] = [state.position, state.late_ignored]
        tmp = stats.with_suffix(".tmp")
        tmp.write_text(json.dumps({**counters, "states": states, "pid": os.getpid()}))
        os.replace(tmp, stats)

    async def dump() -> None:
        write_stats()

    app.agent(source, name=f"{group}.consume", concurrency=1)(consume)
    if dynamo is None:  # the recovered table is visible even when there is nothing to consume
        app.timer(0.5)(dump)
    from faust import Worker

    Worker(app, loglevel="warn", quiet=True, redirect_stdouts=False).execute_from_commandline()


# ----------------------------------------------------------------------------- driver


class _Worker:
    def __init__(self, store: str, bootstrap: str, topic: str, group: str, tmp: Path, aws: str):
        self.args = [store, bootstrap, topic, group]
        self.stats_file = tmp / f"{group}.stats.json"
        self.log = tmp / f"{group}.log"
        self.aws = aws
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.stats_file.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # this module, as a worker
                [
                    *(sys.executable, "-m", "bench.kafka_state", "worker", *self.args),
                    *(str(self.stats_file), self.aws, "worker"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stats(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.stats_file.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def wait(self, done: Any, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.stats()
            if stats and done(stats):
                return stats
            if self.process is None or self.process.poll() is not None:
                tail = self.log.read_text(errors="replace").splitlines()[-30:]
                raise RuntimeError("worker exited:\n" + "\n".join(tail))
            if time.monotonic() > deadline:
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
                raise TimeoutError(
                    f"worker not done in {timeout_s}s: {stats.get('records')}\n{tail}"
                )
            time.sleep(0.1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def _wait_final(
    store: str, worker: _Worker, group: str, dynamodb: Any, expected: Any, timeout_s: float
) -> dict[str, list[int]]:
    """The states once every household reached its last record (what a restart loads)."""
    from services.realtime.adapters.state_store import DynamoStateStore

    deadline = time.monotonic() + timeout_s
    while True:
        if store == "dynamodb":
            loaded = DynamoStateStore(group, dynamodb).load(list(expected)).states
            final = {h: [s.position, s.late_ignored] for h, s in loaded.items()}
        else:
            final = worker.stats().get("states", {})
        if all(final.get(h, [0])[0] == p for h, (p, _) in expected.items()):
            return final
        if worker.process is None or worker.process.poll() is not None:
            raise RuntimeError(f"worker exited; see {worker.log}")
        if time.monotonic() > deadline:
            behind = sum(final.get(h, [0])[0] != p for h, (p, _) in expected.items())
            raise TimeoutError(f"{store}: {behind} households not at their last record")
        time.sleep(0.3)


def _expected(offsets: dict[str, list[int]]) -> dict[str, list[int]]:
    return {h: [max(o) + 1, len(o)] for h, o in offsets.items()}


def _check(final: dict[str, list[int]], expected: dict[str, list[int]]) -> tuple[int, int]:
    """(records lost, records applied twice) over all households."""
    lost = duplicated = 0
    for household, (_, count) in expected.items():
        got = final.get(household, [0, 0])[1]
        lost += max(0, count - got)
        duplicated += max(0, got - count)
    return lost, duplicated


def _measure(
    store: str, bootstrap: str, topic: str, total: int, expected: Any, tmp: Path, aws: Any
) -> dict[str, Any]:
    from wattstream.local.server import client_factory

    dynamodb = client_factory(aws, REGION)("dynamodb")
    result: dict[str, Any] = {}
    timeout_s = 60 + total / 200
    for drill in ("throughput", "crash"):
        group = f"state-{store}-{drill}"
        dynamodb.create_table(
            TableName=group,
            KeySchema=[{"AttributeName": "household_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "household_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        worker = _Worker(store, bootstrap, topic, group, tmp, aws)
        print(f"{store}: {drill}", flush=True)
        worker.start()
        try:
            if drill == "throughput":
                stats = worker.wait(lambda s: s["records"] >= total, timeout_s)
            else:
                twice = 0
                for fraction in (0.3, 0.3):  # kill -9 twice mid-stream, restart each time
                    worker.wait(lambda s, f=fraction: s["records"] >= total * f, timeout_s)
                    worker.kill()
                    twice += worker.stats().get("twice", 0)
                    worker.start()
                final = _wait_final(store, worker, group, dynamodb, expected, timeout_s)
                if store == "table":  # once more after the end: the table from its changelog
                    worker.kill()
                    twice += worker.stats().get("twice", 0)
                    worker.start()
                    final = _wait_final(store, worker, group, dynamodb, expected, timeout_s)
                time.sleep(1.0)  # the last stats of this process
                twice += worker.stats().get("twice", 0)
        finally:
            worker.stop()
        if drill == "throughput":
            result[f"{store}_records_per_s"] = round(total / (stats["last"] - stats["first"]), 1)
        else:
            lost, duplicated = _check(final, expected)
            for h, (p, c) in expected.items():
                if final.get(h, [0, 0]) != [p, c]:
                    print(f"{store} {h}: expected {[p, c]}, final {final.get(h)}", flush=True)
            result[f"{store}_delivered_twice_in_a_batch"] = twice
            result[f"{store}_lost"] = lost
            result[f"{store}_duplicated"] = duplicated
    return result


def run(
    records: int, households: int, broker_kind: str, stores: tuple[str, ...] = STORES
) -> dict[str, Any]:
    from confluent_kafka import Producer

    from wattstream.kafka.topics import ensure_topics
    from wattstream.local.apache_kafka import local_broker
    from wattstream.local.server import EmbeddedAws

    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedAws() as aws,
        local_broker(broker_kind, Path(tmp) / "broker.log", work_dir=Path(tmp) / "b") as broker,
    ):
        bootstrap, topic = broker.bootstrap, "readings"
        ensure_topics(bootstrap, [topic], partitions=4)
        offsets: dict[str, list[int]] = {}
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})

        def delivered(error: Any, message: Any) -> None:
            if error is None:
                offsets.setdefault(message.key().decode(), []).append(message.offset())

        for i in range(records):
            household = f"h{i % households:03d}"
            value = json.dumps({"household": household, "i": i, "kw": 0.5}).encode()
            producer.produce(topic, value, key=household.encode(), on_delivery=delivered)
            if i % 5000 == 0:
                producer.poll(0)
        producer.flush(60)
        print(f"published {records} records", flush=True)
        assert sum(Counter({h: len(o) for h, o in offsets.items()}).values()) == records
        expected = _expected(offsets)
        result: dict[str, Any] = {
            "benchmark": "kafka_state",
            "broker": broker.name,
            "records": records,
            "households": households,
        }
        for store in stores:
            result.update(
                _measure(store, bootstrap, topic, records, expected, Path(tmp), aws.endpoint_url)
            )
            print(json.dumps({k: v for k, v in result.items() if k.startswith(store)}), flush=True)
    if set(stores) == set(STORES):
        table_rate, dynamo_rate = result["table_records_per_s"], result["dynamodb_records_per_s"]
        result["ratio"] = round(table_rate / dynamo_rate, 3)
    return result


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[-1:] == ["worker"] and args[:1] == ["worker"]:
        store, bootstrap, topic, group, stats, aws = args[1:7]
        worker(store, bootstrap, topic, group, Path(stats), aws)
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench kafka_state", description=__doc__)
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--households", type=int, default=200)
    parser.add_argument("--broker", choices=("apache-kafka", "tansu"), default="apache-kafka")
    parser.add_argument("--store", choices=STORES, action="append", help="default: both")
    parsed = parser.parse_args(args)
    stores = tuple(parsed.store or STORES)
    print(json.dumps(run(parsed.records, parsed.households, parsed.broker, stores)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
