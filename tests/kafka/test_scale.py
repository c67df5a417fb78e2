"""Partitions are the unit of scale: two workers of one group split them, keys stay in order."""

from __future__ import annotations

import time

import pytest

from shared.streams.kafka import KafkaPublisher, make_producer
from shared.streams.ports import StreamRecord
from testing.tansu import kafka_stack
from tests.kafka.probes import poison_probe
from wattstream.local.kafka_bus import WorkerProcess


def group_assignment(bootstrap: str, group: str, timeout_s: float) -> dict[str, set[int]]:
    """Member id -> assigned partitions, once the group is stable with two members."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while True:
        [future] = admin.describe_consumer_groups([group]).values()
        try:
            description = future.result(10)
        except Exception:  # the group does not exist yet
            description = None
        if description is not None and str(description.state).endswith("STABLE"):
            members = {
                m.member_id: {tp.partition for tp in m.assignment.topic_partitions}
                for m in description.members
            }
            if len(members) == 2 and all(members.values()):
                return members
        if time.monotonic() > deadline:
            seen = description and (description.state, len(description.members))
            raise TimeoutError(f"group {group} not stable with two members: {seen}")
        time.sleep(0.3)


def test_kafka_two_workers_of_one_group_split_partitions_and_keep_household_order(
    deploy_stack, kafka_broker, tmp_path
):
    if kafka_broker.name.startswith("tansu"):
        pytest.skip("tansu 0.6 describes a STABLE group with 0 members: no split to observe")
    stack = deploy_stack(poison_probe(BatchSize=10))
    bootstrap = kafka_broker.bootstrap
    workers = []
    for name in ("a", "b"):  # each its own state dir (stats, log); one stack, one group
        kafka_stack(stack, bootstrap, tmp_path / name)
        out = tmp_path / f"{name}.handled"
        workers.append(
            WorkerProcess(
                "ProbeFunction", bootstrap, tmp_path / name, extra_env={"PROBE_OUT": str(out)}
            )
        )
    topic = stack.outputs["ReadingsStreamName"]
    households = [f"house-{i:02d}" for i in range(20)]
    records = [StreamRecord(households[i % 20], f"r{i:03d}".encode()) for i in range(400)]
    group = f"{stack.stack_name}-ProbeFunction"

    try:
        for worker in workers:
            worker.start()
        assignment = group_assignment(bootstrap, group, timeout_s=90)
        KafkaPublisher(topic, make_producer(bootstrap)).publish(records)
        deadline = time.monotonic() + 120
        while sum(w.stats().get("records", 0) for w in workers) < len(records):
            assert all(w.running for w in workers), "a worker exited"
            assert time.monotonic() < deadline, [w.stats() for w in workers]
            time.sleep(0.3)
    finally:
        for worker in workers:
            worker.stop()

    # The group split the topic's 4 partitions between the two members, none twice.
    [one, two] = assignment.values()
    assert one
    assert two
    assert not one & two
    assert one | two == {0, 1, 2, 3}
    handled = {}
    for name in ("a", "b"):
        lines = (tmp_path / f"{name}.handled").read_bytes().splitlines()
        handled[name] = [tuple(line.decode().split(" ")) for line in lines]
    assert handled["a"]  # both did work
    assert handled["b"]
    keys = {name: {k for k, _ in pairs} for name, pairs in handled.items()}
    assert not keys["a"] & keys["b"]  # a household is handled by one worker only
    assert keys["a"] | keys["b"] == set(households)
    for name, pairs in handled.items():
        for household in keys[name]:
            mine = [data for k, data in pairs if k == household]
            expected = [r.data.decode() for r in records if r.partition_key == household]
            assert mine == expected, (name, household)  # all, once each, in order
