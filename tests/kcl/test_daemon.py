"""The real Java KCL MultiLangDaemon on the local stack (moto), with our record processor.

Each test renders the consumer's own ``deploy/kcl`` properties for the local stack, starts
``java ... MultiLangDaemon --properties-file`` (:mod:`wattstream.local.kcl_daemon`), which
starts ``wattstream kcl run ArchiveFunction`` per shard lease, and judges the archive: every
reading exactly once. Leases and checkpoints are the daemon's own, in DynamoDB tables it
creates on moto. Without Java or the fetched jars every test here skips with one line that
says what to install.
"""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import datetime

import pytest

from testing.reliability.observe import read_archive
from testing.reliability.runtimes import KclRuntime
from testing.reliability.scenarios import expected_timestamps, publish, real_readings
from wattstream.local import kcl_daemon

pytest.importorskip("amazon_kclpy", reason="amazon-kclpy: run python deploy/kcl/install_kclpy.py")
_MISSING = kcl_daemon.missing()
# a restarted worker waits up to 2 min for a killed leader's lock: past the default 300 s
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING)),
]

#: A worker that dies holds its leases until they expire; short here, so restarts are quick.
FAST_FAILOVER = {"failoverTimeMillis": "5000"}
TIMEOUT_S = 600  # a loaded 2-core machine; the conditions, not the clock, end the waits


def _wait(condition, what: str, runtime: KclRuntime, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(d.log()[-3000:] for d in runtime.daemons)
            raise TimeoutError(f"no {what} after {timeout} s; daemon logs:\n{logs}")
        time.sleep(0.5)


def _drained(runtime: KclRuntime) -> bool:
    return runtime.progress() >= 1.0


def _judge(stack, clients, batches) -> tuple[int, int]:
    archive = read_archive(clients("s3"), stack.outputs["ArchiveBucketName"])
    return archive.missing(expected_timestamps(batches)), archive.duplicated()


def test_daemon_processes_the_stream_end_to_end(deploy_stack, clients, tmp_path):
    stack = deploy_stack(parameters={"ReadingsShardCount": "2"})
    batches = real_readings(2, 1)
    publish(stack, clients, batches, 20)
    runtime = KclRuntime(stack, clients("kinesis"), tmp_path, "ArchiveFunction")
    try:
        runtime.start()
        _wait(lambda: _drained(runtime), "drained stream", runtime)
    finally:
        runtime.stop()

    assert _judge(stack, clients, batches) == (0, 0)
    log = runtime.daemons[0].log()
    assert "MultiLangDaemon" in log
    assert re.search(r"ArchiveFunction: shard shardId-\d+ from", log)  # our processor ran
    assert not runtime.daemons[0].running()  # SIGTERM ended it cleanly


def test_daemon_kill9_of_a_record_processor_restart_loses_and_doubles_nothing(
    deploy_stack, clients, tmp_path
):
    stack = deploy_stack(parameters={"ReadingsShardCount": "2"})
    batches = real_readings(2, 2)
    publish(stack, clients, batches, 20)
    runtime = KclRuntime(
        stack,
        clients("kinesis"),
        tmp_path,
        "ArchiveFunction",
        batch_size=20,
        overrides=FAST_FAILOVER,
    )
    try:
        runtime.start()
        daemon = runtime.daemons[0]
        _wait(lambda: 0 < runtime.progress() < 1 and bool(daemon.processors()), "progress", runtime)
        victim = daemon.processors()[0]
        os.kill(victim, signal.SIGKILL)  # the daemon sees its processor die mid-stream
        # the MultiLangDaemon's rule: a dead processor ends the daemon (after its
        # shutdownGraceMillis); a supervisor restarts it
        _wait(lambda: not daemon.running(), "the daemon's exit", runtime)
        daemon.stop()
        runtime.start()
        _wait(lambda: _drained(runtime), "drained stream", runtime)
    finally:
        runtime.stop()

    assert _judge(stack, clients, batches) == (0, 0)


def test_daemon_kill9_of_the_daemon_restart_loses_and_doubles_nothing(
    deploy_stack, clients, tmp_path
):
    stack = deploy_stack(parameters={"ReadingsShardCount": "2"})
    batches = real_readings(2, 2)
    publish(stack, clients, batches, 20)
    runtime = KclRuntime(
        stack,
        clients("kinesis"),
        tmp_path,
        "ArchiveFunction",
        batch_size=20,
        overrides=FAST_FAILOVER,
    )
    try:
        runtime.start()
        first = runtime.daemons[0]
        _wait(lambda: 0 < runtime.progress() < 1, "progress", runtime)
        first.kill()  # SIGKILL to the daemon only; its processors see stdin close
        _wait(lambda: not first.processors(), "orphaned processors gone", runtime)
        runtime.start()  # a new worker: takes the expired leases, resumes at checkpoints
        _wait(lambda: _drained(runtime), "drained stream", runtime)
    finally:
        runtime.stop()

    assert _judge(stack, clients, batches) == (0, 0)
    assert runtime.starts == 2


def test_two_daemons_of_one_application_split_the_shards_by_lease(deploy_stack, clients, tmp_path):
    stack = deploy_stack(parameters={"ReadingsShardCount": "4"})
    batches = real_readings(4, 1)
    publish(stack, clients, batches, 5)
    runtime = KclRuntime(
        stack,
        clients("kinesis"),
        tmp_path,
        "ArchiveFunction",
        batch_size=5,
        overrides=FAST_FAILOVER,
    )
    dynamodb = runtime.dynamodb

    def owners() -> dict[str, str]:
        try:
            items = dynamodb.scan(TableName=runtime.application).get("Items", [])
        except dynamodb.exceptions.ResourceNotFoundException:  # the daemon makes it
            return {}
        return {i["leaseKey"]["S"]: i["leaseOwner"]["S"] for i in items if "leaseOwner" in i}

    try:
        runtime.start()
        runtime.start()
        _wait(lambda: len(set(owners().values())) == 2, "leases held by both workers", runtime)
        split = owners()
        _wait(lambda: _drained(runtime), "drained stream", runtime)
    finally:
        runtime.stop()

    assert len(split) == 4
    assert len(set(split.values())) == 2  # each worker holds some of the four shards
    assert all(d.starts == 1 for d in runtime.daemons)
    assert _judge(stack, clients, batches) == (0, 0)


def _events(log: str, pattern: str) -> dict[str, datetime]:
    """Shard id -> time of the processor's log line matching ``pattern`` (first seen)."""
    found: dict[str, datetime] = {}
    for match in re.finditer(
        rf"(\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}}) INFO wattstream\.kcl: {pattern}", log
    ):
        found.setdefault(match.group(2), datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f"))
    return found


def test_reshard_children_start_after_their_parents_end(deploy_stack, clients, tmp_path):
    """A split shard: its children's processors start only once it reached SHARD_END.

    moto routes every PutRecord after a split to the closed parent too (its first shard
    covering the key), so the records are all in the parent here; the children start
    empty. What is checked is the KCL's ordering and its checkpoints through SHARD_END.
    """
    stack = deploy_stack(parameters={"ReadingsShardCount": "1"})
    kinesis = clients("kinesis")
    stream = stack.outputs["ReadingsStreamName"]
    batches = real_readings(2, 1)
    publish(stack, clients, batches, 20)
    kinesis.update_shard_count(StreamName=stream, TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    children = {s["ShardId"]: s["ParentShardId"] for s in shards if s.get("ParentShardId")}
    assert len(children) == 2  # the stream was split
    runtime = KclRuntime(
        stack, kinesis, tmp_path, "ArchiveFunction", batch_size=20, overrides=FAST_FAILOVER
    )

    def started() -> dict[str, datetime]:
        return _events(runtime.daemons[0].log(), r"ArchiveFunction: shard (shardId-\d+) from")

    try:
        runtime.start()
        _wait(lambda: set(children) <= set(started()), "children started", runtime)
        _wait(lambda: _drained(runtime), "drained stream", runtime)
    finally:
        runtime.stop()

    ended = _events(runtime.daemons[0].log(), r"(shardId-\d+): shard ended")
    for child, parent in children.items():
        assert parent in ended, f"parent {parent} never reached SHARD_END"
        assert started()[child] >= ended[parent]  # the child waited for its parent
    assert runtime.checkpoints()[next(iter(children.values()))] == "9" * 60  # SHARD_END
    assert _judge(stack, clients, batches) == (0, 0)
