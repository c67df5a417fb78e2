"""The Kafka mapping host: Lambda's mapping semantics on Kafka batches, dead letters."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from shared.streams.kafka import DeadLetterError
from wattstream.hosting.kafka import worker as worker_module
from wattstream.hosting.kafka.worker import KafkaMappingHost, KafkaRecord, settle_or_exit, shard_id
from wattstream.hosting.lambda_model import Function
from wattstream.hosting.settler import MappingPolicy
from wattstream.hosting.template import FunctionSpec

SPEC = FunctionSpec(
    logical_id="ProbeFunction",
    name="probe",
    arn="arn:aws:lambda:us-east-1:123456789012:function:probe",
    handler="probe.handler",
    code_uri=".",
    timeout_s=30,
    memory_mb=128,
    environment={},
)
POLICY = MappingPolicy(
    batch_size=100,
    report_item_failures=True,
    bisect_on_function_error=True,
    max_retry_attempts=2,
    base_backoff_s=0.0,
)


class FakeDeadLetters:
    """Keeps the letters; refuses the first ``refuse`` sends (an unavailable topic)."""

    def __init__(self, refuse: int = 0) -> None:
        self.letters: list[tuple[bytes | None, bytes, dict[str, str]]] = []
        self.refuse = refuse

    def send(self, letters: Sequence[tuple[bytes | None, bytes, Any]]) -> None:
        if self.refuse:
            self.refuse -= 1
            raise DeadLetterError("dead-letter topic unavailable")
        self.letters += [(k, v, dict(h)) for k, v, h in letters]


class Probe:
    """A handler: raises on a poison record, fails records it is told to, once each."""

    def __init__(self, fail_once: set[bytes] = frozenset()) -> None:  # type: ignore[assignment]
        self.fail_once = set(fail_once)
        self.seen: list[bytes] = []
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        datas = [base64.b64decode(r["kinesis"]["data"]) for r in event["Records"]]
        if any(d.startswith(b"poison") for d in datas):
            raise ValueError("cannot handle poison")
        failures = []
        for record, data in zip(event["Records"], datas, strict=True):
            if data in self.fail_once:
                self.fail_once.discard(data)
                failures.append({"itemIdentifier": record["kinesis"]["sequenceNumber"]})
            elif not failures:
                self.seen.append(data)
        return {"batchItemFailures": failures}


def records(*datas: bytes, partition: int = 0, start: int = 0) -> list[KafkaRecord]:
    return [
        KafkaRecord.at("readings", partition, start + i, b"h1", d, 1e9) for i, d in enumerate(datas)
    ]


def host(probe: Probe, letters: FakeDeadLetters) -> KafkaMappingHost:
    return KafkaMappingHost(
        Function(SPEC, probe),
        stream_arn="arn:aws:kinesis:us-east-1:123456789012:stream/readings",
        policy=POLICY,
        dead_letters=letters,  # type: ignore[arg-type]
        sleep=lambda s: None,
    )


def test_kafka_record_sequence_is_offset_plus_one_and_event_names_the_partition():
    probe, letters = Probe(), FakeDeadLetters()

    host(probe, letters).settle_batch(records(b"a", b"b", partition=3, start=0))

    kinesis = [r["kinesis"] for r in probe.events[0]["Records"]]
    assert [k["sequenceNumber"] for k in kinesis] == ["1", "2"]  # never 0: "unknown"
    assert probe.events[0]["Records"][0]["eventID"] == f"{shard_id(3)}:1"
    assert kinesis[0]["partitionKey"] == "h1"


def test_kafka_host_poison_record_dead_lettered_with_original_bytes_others_handled():
    probe, letters = Probe(), FakeDeadLetters()
    worker = host(probe, letters)

    worker.settle_batch(records(b"a", b"b", b"poison\xff", b"c", start=40))

    assert probe.seen == [b"a", b"b", b"c"]
    [(key, value, headers)] = letters.letters
    assert (key, value) == (b"h1", b"poison\xff")
    assert headers["wattstream.offset"] == "42"
    assert headers["wattstream.partition"] == "0"
    assert headers["wattstream.topic"] == "readings"
    assert headers["wattstream.condition"] == "RetryAttemptsExhausted"
    assert "poison" in headers["wattstream.error"]
    assert worker.stats.sent_to_destination == 1
    assert worker.stats.bisects >= 1


def test_kafka_host_partial_failure_retried_from_the_failed_record_only():
    probe, letters = Probe(fail_once={b"b"}), FakeDeadLetters()

    host(probe, letters).settle_batch(records(b"a", b"b", b"c"))

    assert probe.seen == [b"a", b"b", b"c"]  # a once, then b and c on the retry
    assert len(probe.events) == 2
    assert len(probe.events[1]["Records"]) == 2
    assert letters.letters == []


def test_kafka_host_partitions_settled_separately_in_offset_order():
    probe, letters = Probe(), FakeDeadLetters()
    batch = records(b"p0-a", partition=0) + records(b"p1-a", partition=1)
    batch += records(b"p0-b", partition=0, start=1)

    host(probe, letters).settle_batch(batch)

    assert [len(e["Records"]) for e in probe.events] == [2, 1]
    assert probe.seen == [b"p0-a", b"p0-b", b"p1-a"]


def test_kafka_host_dead_letter_topic_down_leaves_batch_unsettled_then_retried():
    probe, letters = Probe(), FakeDeadLetters(refuse=1)
    worker = host(probe, letters)
    batch = records(b"a", b"poison", b"b")

    with pytest.raises(DeadLetterError):
        worker.settle_batch(batch)  # raising = not settled: the agent must not ack it
    asyncio.run(settle_or_exit(worker, batch, max_backoff_s=0.0))

    assert [v for _, v, _ in letters.letters] == [b"poison"]
    assert probe.seen == [b"a", b"b"]  # "a" was settled before and is not handled again
    assert worker.stats.redelivered_skipped == 1


class Exited(BaseException):
    """Stands in for ``os._exit`` (which would end the test process)."""


class BlockingHost:
    """settle_batch waits for ``release``, then succeeds or raises."""

    def __init__(self, fails: bool) -> None:
        self.release = threading.Event()
        self.fails = fails

    def settle_batch(self, records: Sequence[KafkaRecord]) -> None:
        self.release.wait(5)
        if self.fails:
            raise RuntimeError("cannot settle")


async def _stop_mid_batch(host: BlockingHost) -> None:
    task = asyncio.ensure_future(settle_or_exit(host, []))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    task.cancel()  # the worker stops while the batch is in its thread
    await asyncio.sleep(0.05)
    host.release.set()
    await task


def _exit(code: int) -> None:
    raise Exited(code)


def test_settle_or_exit_stopped_mid_batch_that_fails_exits_without_acking(monkeypatch):
    monkeypatch.setattr(worker_module.os, "_exit", _exit)

    with pytest.raises(Exited):
        asyncio.run(_stop_mid_batch(BlockingHost(fails=True)))


def test_settle_or_exit_stopped_mid_batch_that_settles_lets_the_stop_through(monkeypatch):
    monkeypatch.setattr(worker_module.os, "_exit", _exit)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_stop_mid_batch(BlockingHost(fails=False)))
