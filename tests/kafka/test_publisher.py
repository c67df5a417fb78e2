"""KafkaPublisher, dead letters and the bus factory, against the real broker."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.settings import AwsSettings
from shared.streams.factory import StreamBusSettings, publisher_for
from shared.streams.kafka import (
    DeadLetterError,
    KafkaDeadLetters,
    KafkaPublisher,
    make_producer,
)
from shared.streams.kinesis import KinesisPublisher
from shared.streams.ports import PublishError, StreamRecord
from tests.kafka.pipeline import kafka_messages
from wattstream.kafka.topics import ensure_topics


class ScriptedProducer:
    """A producer whose delivery reports fail the values ``fail`` names."""

    def __init__(self, fail: set[bytes]) -> None:
        self.fail = fail
        self.reports: list[Any] = []

    def produce(self, topic: str, key: Any, value: bytes, headers: Any, on_delivery: Any) -> None:
        self.reports.append((on_delivery, value))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        for report, value in self.reports:
            report(_Error("_MSG_TIMED_OUT") if value in self.fail else None, None)
        self.reports.clear()
        return 0


class _Error:
    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name


def test_kafka_publisher_keeps_each_household_on_one_partition_in_order(kafka_broker):
    bootstrap = kafka_broker.bootstrap
    ensure_topics(bootstrap, ["pub-order"])
    records = [StreamRecord(f"h{i % 7}", f"h{i % 7}:{i}".encode()) for i in range(700)]

    report = KafkaPublisher("pub-order", make_producer(bootstrap)).publish(records)

    assert report.records == 700
    messages = kafka_messages(bootstrap, "pub-order", idle_s=1.0)
    assert len(messages) == 700
    partitions: dict[bytes, set[int]] = {}
    order: dict[bytes, list[int]] = {}
    for message in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        partitions.setdefault(message.key(), set()).add(message.partition())
        order.setdefault(message.key(), []).append(int(message.value().split(b":")[1]))
    assert all(len(p) == 1 for p in partitions.values())
    assert all(seq == sorted(seq) for seq in order.values())
    assert len({p for ps in partitions.values() for p in ps}) > 1  # the keys spread out


def test_kafka_publisher_unacknowledged_records_raise_with_exactly_those():
    records = [StreamRecord("h1", b"a"), StreamRecord("h1", b"b"), StreamRecord("h2", b"c")]
    publisher = KafkaPublisher("t", ScriptedProducer(fail={b"b"}))

    with pytest.raises(PublishError) as caught:
        publisher.publish(records)

    assert caught.value.failed == (records[1],)
    assert caught.value.error_codes == ("_MSG_TIMED_OUT",)


def test_kafka_publisher_unreachable_broker_fails_every_record():
    producer = make_producer("127.0.0.1:1", **{"message.timeout.ms": 500, "log_level": 0})
    records = [StreamRecord("h1", b"a"), StreamRecord("h2", b"b")]

    with pytest.raises(PublishError) as caught:
        KafkaPublisher("t", producer, flush_timeout_s=5).publish(records)

    assert set(caught.value.failed) == set(records)


def test_kafka_dead_letters_keep_original_bytes_and_coordinates(kafka_broker):
    bootstrap = kafka_broker.bootstrap
    ensure_topics(bootstrap, ["letters.dlq"])
    original = b"\x00\xffnot a record"

    KafkaDeadLetters("letters.dlq", make_producer(bootstrap)).send(
        [(b"h1", original, {"wattstream.error": "boom", "wattstream.offset": "41"})]
    )

    [letter] = kafka_messages(bootstrap, "letters.dlq", idle_s=1.0)
    assert letter.value() == original
    assert letter.key() == b"h1"
    assert dict(letter.headers()) == {"wattstream.error": b"boom", "wattstream.offset": b"41"}


def test_kafka_dead_letters_not_acknowledged_raise():
    letters = KafkaDeadLetters("t.dlq", ScriptedProducer(fail={b"x"}))

    with pytest.raises(DeadLetterError):
        letters.send([(b"k", b"x", {})])


def test_publisher_for_chooses_the_bus_from_the_environment(monkeypatch):
    aws = AwsSettings()
    monkeypatch.delenv("STREAM_BUS", raising=False)
    assert isinstance(publisher_for("s", aws), KinesisPublisher)
    assert publisher_for("s", aws).preserve_order is True
    assert publisher_for("s", aws, ordered=False).preserve_order is False
    monkeypatch.setenv("STREAM_BUS", "kafka")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    kafka = publisher_for("readings", aws)
    assert isinstance(kafka, KafkaPublisher)
    assert kafka.topic == "readings"


def test_stream_bus_settings_kafka_without_bootstrap_is_refused(monkeypatch):
    monkeypatch.setenv("STREAM_BUS", "kafka")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with pytest.raises(ValidationError):
        StreamBusSettings()
