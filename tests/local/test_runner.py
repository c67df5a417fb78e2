"""Runner semantics, each proven against the real template on a moto server."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest

from shared.streams.kinesis import KinesisPublisher
from shared.streams.ports import StreamRecord
from tests.local import probes
from tests.local.probes import kinesis_probe, sqs_probe
from wattstream.hosting.template import StackDescription
from wattstream.local.runner import DEFAULT_SQS_CONCURRENCY, EventSourceRunner, sqs_concurrency


class Recorder:
    """A Kinesis handler that records what it saw and fails what the test says."""

    def __init__(
        self,
        *,
        fail_record: Callable[[bytes, int], bool] = lambda data, seen: False,
        raise_on_batch: Callable[[list[bytes]], bool] = lambda batch: False,
    ) -> None:
        self.fail_record = fail_record
        self.raise_on_batch = raise_on_batch
        self.calls: list[list[bytes]] = []
        self.delivered: list[bytes] = []
        self.seen: dict[bytes, int] = {}

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        assert context.get_remaining_time_in_millis() > 0
        records = [
            (r["kinesis"]["sequenceNumber"], base64.b64decode(r["kinesis"]["data"]))
            for r in event["Records"]
        ]
        batch = [data for _, data in records]
        self.calls.append(batch)
        if self.raise_on_batch(batch):
            raise RuntimeError("poisoned batch")
        failures = []
        for sequence, data in records:
            self.seen[data] = self.seen.get(data, 0) + 1
            if self.fail_record(data, self.seen[data]):
                failures.append({"itemIdentifier": sequence})
            else:
                self.delivered.append(data)
        return {"batchItemFailures": failures}


def publish(stack: StackDescription, clients: Any, payloads: list[bytes], key: str = "h1") -> None:
    publisher = KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis"))
    publisher.publish([StreamRecord(key, p) for p in payloads])


def runner_for(
    stack: StackDescription, clients: Any, tmp_path: Path, handler: Any, **kwargs: Any
) -> EventSourceRunner:
    return EventSourceRunner(
        stack,
        clients=clients,
        checkpoint_path=tmp_path / "checkpoints.json",
        handlers={"ProbeFunction": handler, "RawProbeFunction": handler},
        functions={"ProbeFunction", "RawProbeFunction"},
        idle_sleep_s=0.01,
        max_backoff_s=0.01,
        **kwargs,
    )


def failure_messages(stack: StackDescription, clients: Any, output: str) -> list[dict[str, Any]]:
    sqs = clients("sqs")
    url = sqs.get_queue_url(QueueName=stack.outputs[output].rsplit("/", 1)[1])["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def payloads(n: int) -> list[bytes]:
    return [f"r{i:02d}".encode() for i in range(n)]


def test_runner_partial_failure_redelivers_from_lowest_failed(deploy_stack, clients, tmp_path):
    stack = deploy_stack(kinesis_probe(), {"ReadingsShardCount": "1"})
    publish(stack, clients, payloads(20))
    recorder = Recorder(fail_record=lambda data, seen: data == b"r03" and seen == 1)

    runner_for(stack, clients, tmp_path, recorder).drain(timeout_s=30)

    assert recorder.calls[0] == payloads(10)
    assert recorder.calls[1][0] == b"r03"  # r00-r02 were checkpointed, r03 onwards retried
    assert recorder.delivered.count(b"r04") == 2  # records after the failure come again
    assert sorted(set(recorder.delivered)) == payloads(20)
    assert failure_messages(stack, clients, "ReadingsFailureQueueUrl") == []


def test_runner_bisect_isolates_poison_record_to_destination(deploy_stack, clients, tmp_path):
    stack = deploy_stack(
        kinesis_probe(
            BatchSize=8,
            BisectBatchOnFunctionError=True,
            MaximumRetryAttempts=1,
            FunctionResponseTypes=[],
        ),
        {"ReadingsShardCount": "1"},
    )
    data = payloads(8)
    data[5] = b"poison"
    publish(stack, clients, data)
    recorder = Recorder(raise_on_batch=lambda batch: b"poison" in batch)

    runner = runner_for(stack, clients, tmp_path, recorder)
    runner.drain(timeout_s=30)

    assert recorder.delivered == [d for d in data if d != b"poison"]  # in order, each once
    assert [len(c) for c in recorder.calls[:4]] == [8, 4, 4, 2]
    (failure,) = failure_messages(stack, clients, "ReadingsFailureQueueUrl")
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["KinesisBatchInfo"]["batchSize"] == 1
    assert runner.stats()["ProbeFunctionReadings"].bisects >= 3


def test_runner_retries_then_sends_batch_info_to_destination(deploy_stack, clients, tmp_path):
    stack = deploy_stack(
        kinesis_probe(BatchSize=5, MaximumRetryAttempts=2), {"ReadingsShardCount": "1"}
    )
    publish(stack, clients, payloads(10))
    recorder = Recorder(raise_on_batch=lambda batch: b"r01" in batch)

    runner_for(stack, clients, tmp_path, recorder).drain(timeout_s=30)

    assert recorder.calls[:3] == [payloads(5)] * 3  # the first try and two retries
    assert recorder.delivered == payloads(10)[5:]
    (failure,) = failure_messages(stack, clients, "ReadingsFailureQueueUrl")
    info = failure["KinesisBatchInfo"]
    assert info["batchSize"] == 5
    assert info["streamArn"] == stack.mappings[0].source_arn
    assert int(info["startSequenceNumber"]) < int(info["endSequenceNumber"])


def test_runner_resumes_after_restart_from_checkpoint(deploy_stack, clients, tmp_path):
    stack = deploy_stack(kinesis_probe(), {"ReadingsShardCount": "2"})
    publish(stack, clients, payloads(12), key="a")
    first = Recorder()
    runner_for(stack, clients, tmp_path, first).drain(timeout_s=30)
    publish(stack, clients, [b"late1", b"late2"], key="a")

    second = Recorder()
    runner_for(stack, clients, tmp_path, second).drain(timeout_s=30)

    assert first.delivered == payloads(12)
    assert second.delivered == [b"late1", b"late2"]


def test_runner_latest_position_survives_restart_before_first_record(
    deploy_stack, clients, tmp_path
):
    stack = deploy_stack(kinesis_probe(StartingPosition="LATEST"), {"ReadingsShardCount": "1"})
    publish(stack, clients, [b"before"])
    time.sleep(0.05)
    runner_for(stack, clients, tmp_path, Recorder()).drain(timeout_s=30)
    publish(stack, clients, [b"while-down"])

    recorder = Recorder()
    runner_for(stack, clients, tmp_path, recorder).drain(timeout_s=30)

    assert recorder.delivered == [b"while-down"]


def test_runner_sends_records_older_than_maximum_age_to_destination(
    deploy_stack, clients, tmp_path
):
    stack = deploy_stack(kinesis_probe(MaximumRecordAgeInSeconds=60), {"ReadingsShardCount": "1"})
    publish(stack, clients, payloads(3))
    recorder = Recorder()

    runner_for(stack, clients, tmp_path, recorder, clock=lambda: time.time() + 3600).drain(
        timeout_s=30
    )

    assert recorder.calls == []
    (failure,) = failure_messages(stack, clients, "ReadingsFailureQueueUrl")
    assert failure["requestContext"]["condition"] == "RecordAgeExceeded"
    assert failure["KinesisBatchInfo"]["batchSize"] == 3


def test_runner_imports_handler_and_environment_from_template(deploy_stack, clients, tmp_path):
    stack = deploy_stack(kinesis_probe(), {"ReadingsShardCount": "1"})
    publish(stack, clients, payloads(2))
    runner = EventSourceRunner(
        stack,
        clients=clients,
        checkpoint_path=tmp_path / "c.json",
        idle_sleep_s=0.01,
        functions={"ProbeFunction"},
        log_dir=tmp_path / "logs",
    )
    probes.SEEN_STREAMS.clear()

    runner.drain(timeout_s=30)

    assert runner.stats()["ProbeFunctionReadings"].records == 2
    assert probes.SEEN_STREAMS == [(stack.outputs["ReadingsStreamName"], stack.endpoint_url)]
    runner.stop()
    assert (tmp_path / "logs" / "ProbeFunction.log").read_text() == "echo 2 records\n"
    assert "PROBE_STREAM" not in os.environ  # the function's environment is its own


class S3EventRecorder:
    """An SQS handler for S3 events; fails keys starting with ``bad``."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            body = json.loads(record["body"])
            if body.get("Event") == "s3:TestEvent":
                continue
            for s3_record in body["Records"]:
                key = unquote_plus(s3_record["s3"]["object"]["key"])
                self.keys.append(key)
                if key.startswith("uploads/bad"):
                    failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}


def test_runner_s3_events_partial_failure_then_redrive_to_dlq(deploy_stack, clients, tmp_path):
    stack = deploy_stack(sqs_probe(), {"RawEventsVisibilityTimeout": "1"})
    s3 = clients("s3")
    s3.put_object(Bucket=stack.outputs["RawBucketName"], Key="uploads/good one.txt", Body=b"1")
    s3.put_object(Bucket=stack.outputs["RawBucketName"], Key="uploads/bad+file.txt", Body=b"2")
    recorder = S3EventRecorder()
    runner = runner_for(stack, clients, tmp_path, recorder)

    deadline = time.monotonic() + 120  # a bound for a hung test, not a speed goal
    dead: list[dict[str, Any]] = []
    while not dead and time.monotonic() < deadline:
        runner.poll_once()
        time.sleep(0.2)
        dead = failure_messages(stack, clients, "RawEventsDeadLetterQueueUrl")

    assert recorder.keys.count("uploads/good one.txt") == 1  # deleted after success
    assert recorder.keys.count("uploads/bad+file.txt") == 3  # maxReceiveCount in the template
    assert [unquote_plus(r["s3"]["object"]["key"]) for r in dead[0]["Records"]] == [
        "uploads/bad+file.txt"
    ]


@pytest.mark.parametrize("response", [{"batchItemFailures": [{"itemIdentifier": "nope"}]}, 42])
def test_runner_invalid_item_failure_reply_fails_whole_batch(
    deploy_stack, clients, tmp_path, response
):
    stack = deploy_stack(
        kinesis_probe(BatchSize=5, MaximumRetryAttempts=0), {"ReadingsShardCount": "1"}
    )
    publish(stack, clients, payloads(5))
    calls = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        calls.append(len(event["Records"]))
        return response

    runner = runner_for(stack, clients, tmp_path, handler)
    runner.drain(timeout_s=30)

    expected_errors = 1 if isinstance(response, dict) else 0
    assert calls == [5]
    assert runner.stats()["ProbeFunctionReadings"].function_errors == expected_errors
    sent = failure_messages(stack, clients, "ReadingsFailureQueueUrl")
    assert len(sent) == expected_errors


def test_runner_batching_window_waits_to_fill_batch(deploy_stack, clients, tmp_path):
    stack = deploy_stack(
        kinesis_probe(BatchSize=100, MaximumBatchingWindowInSeconds=5),
        {"ReadingsShardCount": "1"},
    )
    now = [time.time()]
    recorder = Recorder()
    runner = runner_for(stack, clients, tmp_path, recorder, clock=lambda: now[0])
    publish(stack, clients, payloads(3))

    runner.poll_once()
    publish(stack, clients, payloads(5)[3:])
    runner.poll_once()
    assert recorder.calls == []  # inside the window: keep gathering
    now[0] += 5.1
    runner.poll_once()

    assert recorder.calls == [payloads(5)]


def test_runner_without_batching_windows_invokes_with_what_is_there(
    deploy_stack, clients, tmp_path
):
    """`run --once` in lockstep: each poll hands over what arrived, no waiting to fill."""
    stack = deploy_stack(
        kinesis_probe(BatchSize=100, MaximumBatchingWindowInSeconds=5),
        {"ReadingsShardCount": "1"},
    )
    now = [time.time()]
    recorder = Recorder()
    runner = runner_for(
        stack, clients, tmp_path, recorder, clock=lambda: now[0], batching_windows=False
    )
    publish(stack, clients, payloads(3))

    runner.poll_once()
    runner.poll_once()  # the first poll may only have fetched

    assert recorder.calls == [payloads(3)]


class BindableProbe:
    """A shell entry (``bind(environment) -> handler``) that records payloads in order and can
    hold its invocation until released."""

    def __init__(self, expected: int = 0, *, hold: bool = False) -> None:
        self.delivered: list[bytes] = []
        self.environments: list[dict[str, str]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.all_seen = threading.Event()
        self.expected = expected
        if not hold:
            self.release.set()

    def bind(self, environment: Any) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        self.environments.append(dict(environment))

        def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
            self.started.set()
            assert self.release.wait(STUCK_S), "never released"
            self.delivered += [base64.b64decode(r["kinesis"]["data"]) for r in event["Records"]]
            if len(self.delivered) >= self.expected:
                self.all_seen.set()
            return {"batchItemFailures": []}

        return handle

    def reset(self) -> None:
        self.environments.clear()


#: Liveness bound for event waits: reached only when one function is blocked by another.
STUCK_S = 60


def test_runner_slow_function_does_not_stall_another_functions_records(
    deploy_stack, clients, tmp_path
):
    def both(template: dict[str, Any]) -> None:
        kinesis_probe("SlowFunction")(template)
        kinesis_probe("FastFunction")(template)

    stack = deploy_stack(both, {"ReadingsShardCount": "1"})
    slow, fast = BindableProbe(hold=True), BindableProbe(expected=25)
    runner = EventSourceRunner(
        stack,
        clients=clients,
        checkpoint_path=tmp_path / "c.json",
        handlers={"SlowFunction": slow, "FastFunction": fast},
        functions={"SlowFunction", "FastFunction"},
        idle_sleep_s=0.01,
    )
    publish(stack, clients, payloads(25))
    runner.start()
    try:
        assert slow.started.wait(STUCK_S)
        assert fast.all_seen.wait(STUCK_S), "the fast function waited for the slow one"
        assert not slow.release.is_set()  # every record went through while slow was held
    finally:
        slow.release.set()
        runner.stop()

    assert fast.delivered == payloads(25)  # in shard order, across its batches
    assert fast.environments[0]["PROBE_STREAM"] == stack.outputs["ReadingsStreamName"]
    assert fast.environments[0]["AWS_LAMBDA_FUNCTION_NAME"] == stack.functions["FastFunction"].name
    assert slow.environments[0]["AWS_LAMBDA_FUNCTION_NAME"] == stack.functions["SlowFunction"].name
    assert "PROBE_STREAM" not in os.environ


def test_runner_sqs_mapping_keeps_maximum_concurrency_batches_in_flight(
    deploy_stack, clients, tmp_path
):
    # The first three calls wait at a barrier for each other: with one batch at a time the
    # barrier breaks (after STUCK_S) instead of opening. (The queue also holds S3's test
    # event, so a fourth call comes after them.)
    stack = deploy_stack(
        sqs_probe(BatchSize=1, ScalingConfig={"MaximumConcurrency": 3}),
        {"RawEventsVisibilityTimeout": "600"},
    )
    barrier = threading.Barrier(3, timeout=STUCK_S)
    keys: list[str] = []
    opened, done = threading.Event(), threading.Event()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not opened.is_set():
            barrier.wait()
            opened.set()
        for record in event["Records"]:
            for s3_record in json.loads(record["body"]).get("Records", []):
                keys.append(unquote_plus(s3_record["s3"]["object"]["key"]))
        if len(keys) >= 3:
            done.set()
        return {"batchItemFailures": []}

    s3 = clients("s3")
    for n in range(3):
        s3.put_object(Bucket=stack.outputs["RawBucketName"], Key=f"uploads/{n}.txt", Body=b"1")
    runner = runner_for(stack, clients, tmp_path, handler)
    assert [p.concurrency for p in runner.pollers] == [3]
    runner.start()
    try:
        assert done.wait(STUCK_S), "the three batches were not in flight together"
    finally:
        runner.stop()

    assert sorted(keys) == ["uploads/0.txt", "uploads/1.txt", "uploads/2.txt"]
    stats = runner.stats()["RawProbeFunctionRawEvents"]
    assert opened.is_set()
    assert stats.function_errors == 0
    assert stats.records == stats.invocations >= 3


def test_runner_stop_waits_one_deadline_for_all_threads_not_one_each(
    deploy_stack, clients, tmp_path, caplog
):
    # Three calls held in flight: stop() must share one deadline between the threads (the
    # first join gets it all, the others nothing left), not give each thread its own.
    stack = deploy_stack(
        sqs_probe(BatchSize=1, ScalingConfig={"MaximumConcurrency": 3}),
        {"RawEventsVisibilityTimeout": "600"},
    )
    release = threading.Event()
    in_flight = threading.Semaphore(0)

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        in_flight.release()
        release.wait(STUCK_S)
        return {"batchItemFailures": []}

    s3 = clients("s3")
    for n in range(3):
        s3.put_object(Bucket=stack.outputs["RawBucketName"], Key=f"uploads/{n}.txt", Body=b"1")
    runner = runner_for(stack, clients, tmp_path, handler)
    runner.start()
    joins: list[float] = []

    class RecordedJoin:
        def __init__(self, thread: threading.Thread) -> None:
            self.thread, self.name = thread, thread.name

        def join(self, timeout: float | None = None) -> None:
            joins.append(timeout)
            self.thread.join(timeout)

        def is_alive(self) -> bool:
            return self.thread.is_alive()

    try:
        for _ in range(3):
            assert in_flight.acquire(timeout=STUCK_S), "three calls never got in flight"
        runner._threads = [RecordedJoin(t) for t in runner._threads]  # type: ignore[misc]
        with caplog.at_level("WARNING", logger="wattstream.runner"):
            runner.stop(timeout_s=0.2)
    finally:
        release.set()

    assert len(joins) == 3
    assert joins[0] <= 0.2
    assert joins[1:] == [0.0, 0.0]  # the deadline had passed: no second 0.2 s each
    assert "stopped with calls still running in" in caplog.text


@pytest.mark.parametrize(
    ("scaling", "expected"),
    [(None, DEFAULT_SQS_CONCURRENCY), ({"MaximumConcurrency": 5}, 5), ({}, 2)],
)
def test_sqs_concurrency_reads_scaling_config_or_the_local_default(scaling, expected):
    properties = {} if scaling is None else {"ScalingConfig": scaling}
    assert sqs_concurrency(properties) == expected


@pytest.mark.parametrize("value", [1, 1001])
def test_sqs_concurrency_refuses_what_aws_refuses(value):
    with pytest.raises(ValueError, match="2-1000"):
        sqs_concurrency({"ScalingConfig": {"MaximumConcurrency": value}})
