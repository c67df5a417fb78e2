"""The generic KCL record processor, driven over the MultiLangDaemon protocol.

Each test runs amazon_kclpy's real ``KCLProcess`` over OS pipes with a fake daemon on the
other end (:mod:`testing.kcl_daemon_standin`) and an injected handler, and checks what
the daemon sees: the checkpoints (with their sub-sequence numbers) and the status replies.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Collection
from typing import Any

import pytest

pytest.importorskip("amazon_kclpy", reason="the kcl extra: python deploy/kcl/install_kclpy.py")

from testing.kcl_daemon_standin import ProcessorExited, in_thread, record
from wattstream.hosting.kcl.processor import LambdaShardProcessor
from wattstream.hosting.lambda_model import Function
from wattstream.hosting.settler import MappingPolicy
from wattstream.hosting.template import FunctionSpec

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:t1-ProbeFunction"
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/t1-ReadingsStream"
SHARD = "shardId-000000000007"
NOW_MS = 1_700_000_000_000


def seq(i: int) -> str:
    return f"4959033827149025660855969253836157109592157598913658{i:04d}"


def records(*numbers: int, arrived_ms: int = NOW_MS) -> list[dict[str, Any]]:
    return [record(f"reading {i}".encode(), seq(i), arrived_ms=arrived_ms) for i in numbers]


class Handler:
    """A Lambda handler whose failures are decided per batch; records every batch it saw.

    ``fail(sequences)`` returns the sequence numbers to report as failed, or raises (a
    function error).
    """

    def __init__(self, fail: Callable[[list[str]], Collection[str]] = lambda s: ()) -> None:
        self.fail = fail
        self.batches: list[list[str]] = []
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        sequences = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
        self.batches.append(sequences)
        self.events.append(event)
        failed = self.fail(sequences)
        return {"batchItemFailures": [{"itemIdentifier": s} for s in failed]}


class MemoryDestination:
    def __init__(self, broken: bool = False) -> None:
        self.documents: list[dict[str, Any]] = []
        self.broken = broken

    def send(self, document: dict[str, Any]) -> None:
        if self.broken:
            raise ConnectionError("the failure queue is unreachable")
        self.documents.append(document)


def make_processor(
    handler: Handler,
    *,
    destination: MemoryDestination | None = None,
    sleeps: list[float] | None = None,
    **policy: Any,
) -> LambdaShardProcessor:
    spec = FunctionSpec(
        logical_id="ProbeFunction",
        name="t1-ProbeFunction",
        arn=FUNCTION_ARN,
        handler="tests.kcl.test_processor.Handler",
        code_uri=".",
        timeout_s=60,
        memory_mb=128,
        environment={"PROBE": "1"},
    )
    settings = {"batch_size": 100, "bisect_on_function_error": True, "max_retry_attempts": 2}
    return LambdaShardProcessor(
        Function(spec, handler),
        stream_arn=STREAM_ARN,
        policy=MappingPolicy(**{**settings, **policy}),
        destination=destination,
        sleep=(sleeps if sleeps is not None else []).append,
        clock=lambda: NOW_MS / 1000,
    )


def test_processor_success_checkpoints_after_the_batch_with_sub_sequence():
    handler = Handler()
    with in_thread(make_processor(handler)) as (daemon, _):
        daemon.initialize(SHARD)
        requests = daemon.process_records(records(1, 2, 3))

    assert handler.batches == [[seq(1), seq(2), seq(3)]]
    assert requests == [{"action": "checkpoint", "sequenceNumber": seq(3), "subSequenceNumber": 0}]
    assert daemon.checkpoints == [(seq(3), 0)]


def test_processor_event_is_the_lambda_kinesis_event():
    handler = Handler()
    with in_thread(make_processor(handler)) as (daemon, _):
        daemon.initialize(SHARD)
        daemon.process_records(records(1))

    (item,) = handler.events[0]["Records"]
    assert item["eventID"] == f"{SHARD}:{seq(1)}"
    assert item["eventSourceARN"] == STREAM_ARN
    assert item["awsRegion"] == "us-east-1"
    assert item["kinesis"]["partitionKey"] == "uci-0001"
    assert base64.b64decode(item["kinesis"]["data"]) == b"reading 1"
    assert item["kinesis"]["approximateArrivalTimestamp"] == NOW_MS / 1000


def test_processor_partial_failure_checkpoints_before_lowest_and_retries_the_rest():
    attempts: list[int] = []

    def fail_once(sequences: list[str]) -> Collection[str]:
        attempts.append(1)
        return {seq(3)} if len(attempts) == 1 else ()

    handler = Handler(fail_once)
    sleeps: list[float] = []
    with in_thread(make_processor(handler, sleeps=sleeps)) as (daemon, _):
        daemon.initialize(SHARD)
        daemon.process_records(records(1, 2, 3, 4))

    # Records after the failed one come again: handlers are idempotent.
    assert handler.batches == [[seq(1), seq(2), seq(3), seq(4)], [seq(3), seq(4)]]
    assert daemon.checkpoints == [(seq(2), 0), (seq(4), 0)]
    assert len(sleeps) == 1


def test_processor_retries_are_bounded_then_coordinates_go_to_the_destination():
    handler = Handler(lambda sequences: {seq(2)} & set(sequences))
    destination = MemoryDestination()
    processor = make_processor(handler, destination=destination, max_retry_attempts=2)
    with in_thread(processor) as (daemon, _):
        daemon.initialize(SHARD)
        daemon.process_records(records(1, 2, 3))

    # The first try plus two retries of the failed record (and the one after it).
    assert handler.batches == [[seq(1), seq(2), seq(3)], [seq(2), seq(3)], [seq(2), seq(3)]]
    (document,) = destination.documents
    info = document["KinesisBatchInfo"]
    assert (info["shardId"], info["streamArn"]) == (SHARD, STREAM_ARN)
    # The whole retried batch is discarded, from the lowest failure to its end (AWS).
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (seq(2), seq(3))
    assert info["batchSize"] == 2
    assert document["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert document["requestContext"]["functionArn"] == FUNCTION_ARN
    assert document["requestContext"]["approximateInvokeCount"] == 3
    # Before the lowest failure, then past the discarded batch.
    assert daemon.checkpoints == [(seq(1), 0), (seq(3), 0)]
    assert processor.stats.sent_to_destination == 2


def test_processor_function_error_bisects_down_to_the_poison_record():
    def poison(sequences: list[str]) -> Collection[str]:
        if seq(3) in sequences:
            raise RuntimeError("poisoned batch")
        return ()

    handler = Handler(poison)
    destination = MemoryDestination()
    processor = make_processor(handler, destination=destination, max_retry_attempts=1)
    with in_thread(processor) as (daemon, _):
        daemon.initialize(SHARD)
        daemon.process_records(records(1, 2, 3, 4))

    (document,) = destination.documents
    info = document["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["batchSize"]) == (seq(3), 1)
    assert "RuntimeError: poisoned batch" in document["responseContext"]["functionError"]
    assert [seq(3)] in handler.batches
    assert [seq(4)] in handler.batches
    assert daemon.checkpoints == [(seq(2), 0), (seq(3), 0), (seq(4), 0)]
    assert processor.stats.bisects >= 2


def test_processor_unusable_reply_is_a_function_error():
    handler = Handler(lambda sequences: {"not-in-this-batch"})
    destination = MemoryDestination()
    processor = make_processor(
        handler, destination=destination, max_retry_attempts=0, bisect_on_function_error=False
    )
    with in_thread(processor) as (daemon, _):
        daemon.initialize(SHARD)
        daemon.process_records(records(1, 2))

    (document,) = destination.documents
    assert document["KinesisBatchInfo"]["batchSize"] == 2
    assert "batchItemFailures" in document["responseContext"]["functionError"]
    assert daemon.checkpoints == [(seq(2), 0)]


def test_processor_cuts_a_kcl_batch_to_the_mapping_batch_size():
    handler = Handler()
    with in_thread(make_processor(handler, batch_size=2)) as (daemon, _):
        daemon.initialize(SHARD)
        daemon.process_records(records(1, 2, 3, 4, 5))

    assert [len(b) for b in handler.batches] == [2, 2, 1]
    assert daemon.checkpoints == [(seq(2), 0), (seq(4), 0), (seq(5), 0)]


def test_processor_records_past_maximum_age_skip_the_handler():
    handler = Handler()
    destination = MemoryDestination()
    processor = make_processor(handler, destination=destination, max_record_age_s=60)
    old = records(1, 2, arrived_ms=NOW_MS - 120_000)
    with in_thread(processor) as (daemon, _):
        daemon.initialize(SHARD)
        daemon.process_records([*old, *records(3)])

    (document,) = destination.documents
    assert document["requestContext"]["condition"] == "RecordAgeExceeded"
    assert document["KinesisBatchInfo"]["batchSize"] == 2
    assert handler.batches == [[seq(3)]]
    assert daemon.checkpoints == [(seq(2), 0), (seq(3), 0)]


def test_processor_lease_lost_does_not_checkpoint():
    with in_thread(make_processor(Handler())) as (daemon, _):
        daemon.initialize(SHARD)
        requests = daemon.lease_lost()

    assert requests == []
    assert daemon.checkpoints == []


def test_processor_shard_ended_checkpoints_at_shard_end():
    with in_thread(make_processor(Handler())) as (daemon, _):
        daemon.initialize(SHARD)
        daemon.process_records(records(1))
        requests = daemon.shard_ended()

    assert requests == [{"action": "checkpoint", "sequenceNumber": None, "subSequenceNumber": None}]
    assert daemon.checkpoints == [(seq(1), 0), (None, None)]


def test_processor_shutdown_requested_checkpoints():
    with in_thread(make_processor(Handler())) as (daemon, _):
        daemon.initialize(SHARD)
        daemon.process_records(records(1, 2))
        daemon.shutdown_requested()

    assert daemon.checkpoints == [(seq(2), 0), (None, None)]


def test_processor_checkpoint_shutdown_exception_stops_the_batch():
    handler = Handler(lambda sequences: {seq(2)} & set(sequences))
    destination = MemoryDestination()
    with in_thread(make_processor(handler, destination=destination)) as (daemon, _):
        daemon.initialize(SHARD)
        daemon.checkpoint_errors = ["ShutdownException"]  # the lease moved meanwhile
        requests = daemon.process_records(records(1, 2, 3))

    assert len(requests) == 1  # the refused checkpoint before the failed record
    assert handler.batches == [[seq(1), seq(2), seq(3)]]  # no retries for the new owner
    assert destination.documents == []
    assert daemon.checkpoints == []


def test_processor_throttled_checkpoint_is_retried():
    sleeps: list[float] = []
    with in_thread(make_processor(Handler(), sleeps=sleeps)) as (daemon, _):
        daemon.initialize(SHARD)
        daemon.checkpoint_errors = ["ThrottlingException", "ThrottlingException"]
        requests = daemon.process_records(records(1))

    assert len(requests) == 3
    assert daemon.checkpoints == [(seq(1), 0)]
    assert len(sleeps) == 2


def test_processor_unreachable_destination_exits_without_checkpointing():
    handler = Handler(lambda sequences: set(sequences))
    processor = make_processor(handler, destination=MemoryDestination(broken=True))
    with in_thread(processor) as (daemon, state):
        daemon.initialize(SHARD)
        with pytest.raises(ProcessorExited):
            daemon.process_records(records(1))

    assert isinstance(state.exit, SystemExit)
    assert daemon.checkpoints == []  # the daemon restarts the shard from here


def test_retry_policy_of_template_mapping():
    from wattstream.hosting.template import MappingSpec

    mapping = MappingSpec(
        "ArchiveFunctionReadings",
        "ArchiveFunction",
        {
            "EventSourceArn": STREAM_ARN,
            "BatchSize": 100,
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 5,
            "MaximumRecordAgeInSeconds": 86400,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    )
    policy = MappingPolicy.of(mapping)

    assert policy == MappingPolicy(
        batch_size=100,
        report_item_failures=True,
        bisect_on_function_error=True,
        max_retry_attempts=5,
        max_record_age_s=86400,
    )
    assert not policy.exhausted(5)
    assert policy.exhausted(6)
    assert policy.backoff_s(1) < policy.backoff_s(2) <= policy.max_backoff_s
