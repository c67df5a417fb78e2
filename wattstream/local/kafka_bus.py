"""``wattstream run --bus kafka``: the local stack with the stream consumers on Kafka.

moto still provides S3, DynamoDB and SQS; the local runner keeps the SQS (S3 event)
mappings; each Kinesis-mapped function of the template runs as a faust worker
subprocess (:class:`WorkerProcess`: started, killed with ``kill -9``, restarted, its
counters read) on its stream's topic; and every composition root of this process (ingest
API, replay, the S3-triggered functions) publishes to Kafka through ``publisher_for``.
Local tooling: tests and benchmarks start the same workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattstream.hosting.kafka.worker import dlq_topic
from wattstream.kafka.topics import ensure_topics, stream_topics, use_kafka_bus

#: The worker command line, with ``wattstream`` as the program name in its messages.
_RUN_CLI = "import sys; from wattstream.cli import main; sys.argv[0] = 'wattstream'; main()"


@dataclass
class WorkerProcess:
    """``wattstream kafka worker FUNCTION`` as a subprocess bound to a saved local stack.

    ``state_dir`` holds the stack description (``stack.json``); the worker writes its
    counters to ``stats_file`` after every batch and its log to ``log_file``.
    """

    function: str
    bootstrap: str
    state_dir: Path
    session_timeout_s: float = 6.0
    group_id: str | None = None  # the worker's default (STACK-FUNCTION) when None
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def stats_file(self) -> Path:
        return self.state_dir / f"kafka-{self.function}.stats.json"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"kafka-{self.function}.log"

    def start(self) -> WorkerProcess:
        self.stats_file.unlink(missing_ok=True)
        env = {**os.environ, "WATTSTREAM_STATE_DIR": str(self.state_dir), **self.extra_env}
        self.starts += 1
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603  # our own CLI
                [
                    *(sys.executable, "-c", _RUN_CLI, "kafka", "worker", self.function),
                    *("--bootstrap", self.bootstrap, "--stats-file", str(self.stats_file)),
                    *("--session-timeout", str(self.session_timeout_s)),
                    *(("--group-id", self.group_id) if self.group_id else ()),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """``kill -9``: no shutdown, no commit, no goodbye to the group."""
        if self.process is not None and self.running:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop in time; returns the exit status."""
        if self.process is None:
            return None
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def restart(self) -> WorkerProcess:
        self.kill()
        return self.start()

    def stats(self) -> dict[str, Any]:
        """The counters of the running process ({} before its first batch)."""
        try:
            return dict(json.loads(self.stats_file.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def wait_until(self, done: Any, timeout_s: float, poll_s: float = 0.2) -> dict[str, Any]:
        """Poll the counters until ``done(stats)``; fails fast if the worker died."""
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.stats()
            if stats and done(stats):
                return stats
            if not self.running:
                raise RuntimeError(f"{self.function} worker exited; see {self.log_file}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.function} worker: not done in {timeout_s}s: {stats}")
            time.sleep(poll_s)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def prepare_bus(description: Any, bootstrap: str, partitions: int) -> None:
    """Publish to Kafka from this process; create the stack's topics and DLQs."""
    use_kafka_bus(bootstrap)
    topics = stream_topics(description)
    ensure_topics(bootstrap, topics + [dlq_topic(t) for t in topics], partitions=partitions)


def stream_consumers(description: Any) -> list[str]:
    """Functions with a Kinesis mapping (faust workers on Kafka)."""
    return sorted({m.function_logical_id for m in description.mappings if _kinesis(m)})


def queue_consumers(description: Any) -> set[str]:
    """Functions with a non-Kinesis mapping (S3 events via SQS: the local runner)."""
    return {m.function_logical_id for m in description.mappings if not _kinesis(m)}


def _kinesis(mapping: Any) -> bool:
    return bool(mapping.source_kind == "kinesis")


def start_workers(description: Any, bootstrap: str, state_dir: Path) -> list[WorkerProcess]:
    return [
        WorkerProcess(f, bootstrap, state_dir.resolve(), session_timeout_s=10.0).start()
        for f in stream_consumers(description)
    ]


def wait_quiet(
    workers: list[WorkerProcess],
    description: Any,
    *,
    quiet_s: float = 5.0,
    timeout_s: float = 600.0,
) -> None:
    """Until the readings consumers have handled something and no worker did for ``quiet_s``."""
    readings = description.outputs.get("ReadingsStreamName", "")
    required = {
        m.function_logical_id
        for m in description.mappings
        if _kinesis(m) and m.source_arn.endswith(f"/{readings}")
    }
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for worker in workers:
            if not worker.running:
                raise RuntimeError(f"{worker.function} worker exited; see {worker.log_file}")
        stats = {w.function: w.stats() for w in workers}
        last = max((s.get("last_batch_done_at", 0.0) for s in stats.values()), default=0.0)
        if all(stats.get(f) for f in required) and time.time() - last > quiet_s:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the Kafka workers were still busy after {timeout_s} s")


def summary(workers: list[WorkerProcess]) -> list[str]:
    lines = []
    for worker in workers:
        stats = worker.stats()
        lines.append(
            f"  {worker.function} (faust): {stats.get('invocations', 0)} invocations, "
            f"{stats.get('records', 0)} records, {stats.get('function_errors', 0)} errors, "
            f"{stats.get('sent_to_destination', 0)} dead-lettered"
        )
    return lines
