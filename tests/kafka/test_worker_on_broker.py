"""A real faust worker subprocess on the broker: a poison record ends in the DLQ."""

from __future__ import annotations

from shared.streams.kafka import KafkaPublisher, make_producer
from shared.streams.ports import StreamRecord
from testing.tansu import kafka_stack
from tests.kafka.pipeline import kafka_messages
from tests.kafka.probes import poison_probe
from wattstream.hosting.kafka.worker import dlq_topic
from wattstream.local.kafka_bus import WorkerProcess


def test_kafka_worker_poison_record_dead_lettered_the_rest_handled_in_order(
    deploy_stack, kafka_broker, tmp_path
):
    stack = deploy_stack(
        poison_probe(BatchSize=10, MaximumRetryAttempts=1, BisectBatchOnFunctionError=True)
    )
    bootstrap = kafka_broker.bootstrap
    kafka_stack(stack, bootstrap, tmp_path)
    topic = stack.outputs["ReadingsStreamName"]
    records = [StreamRecord(f"h{i % 3}", f"r{i:03d}".encode()) for i in range(30)]
    poison = StreamRecord("h1", b"poison\x00\xff")
    records.insert(13, poison)
    out = tmp_path / "handled.txt"

    KafkaPublisher(topic, make_producer(bootstrap)).publish(records)
    with WorkerProcess(
        "ProbeFunction", bootstrap, tmp_path, extra_env={"PROBE_OUT": str(out)}
    ) as worker:
        stats = worker.wait_until(
            lambda s: s["records"] + s["sent_to_destination"] >= len(records), timeout_s=90
        )

    assert stats["sent_to_destination"] == 1
    assert stats["bisects"] >= 1
    [letter] = kafka_messages(bootstrap, dlq_topic(topic), idle_s=1.0)
    assert letter.value() == poison.data
    assert letter.key() == b"h1"
    headers = {k: v.decode() for k, v in letter.headers()}
    assert headers["wattstream.topic"] == topic
    assert headers["wattstream.condition"] == "RetryAttemptsExhausted"
    assert "poison" in headers["wattstream.error"]
    handled = [line.split(b" ") for line in out.read_bytes().splitlines()]
    for key in (b"h0", b"h1", b"h2"):
        mine = [data for k, data in handled if k == key]
        expected = [r.data for r in records if r.partition_key.encode() == key and r is not poison]
        assert sorted(set(mine)) == expected  # every good record handled
        assert [d for i, d in enumerate(mine) if d not in mine[:i]] == expected  # in order
