"""A stand-in for the Java MultiLangDaemon: the KCL JSON protocol over real line streams.

The daemon writes one JSON action per line to the record processor's stdin and reads its
replies from its stdout: a ``checkpoint`` request must be answered (with
``sequenceNumber``, ``subSequenceNumber`` and ``error``) before the processor goes on,
and every action ends with ``{"action": "status", "responseFor": <action>}``. The
processor runs either in a thread (driving ``amazon_kclpy.kcl.KCLProcess`` over OS pipes)
or as a subprocess (``wattstream kcl run``): the same bytes either way.

A package module, not a test helper: the KCL tests use it, and so does the reliability
suite's crash scenario (``python -m bench reliability``), which needs a daemon that
moto can host (the Java one needs DynamoDB leases moto cannot hold).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

_TIMEOUT_S = 60.0
_EOF = object()


class ProcessorExited(AssertionError):
    """The processor closed its output (it exited) before answering."""


def record(
    data: bytes, sequence: str, *, key: str = "uci-0001", arrived_ms: int, sub: int = 0
) -> dict[str, Any]:
    """A record as the daemon sends it (``data`` base64, arrival time in milliseconds)."""
    return {
        "action": "record",
        "data": base64.b64encode(data).decode("ascii"),
        "partitionKey": key,
        "sequenceNumber": sequence,
        "subSequenceNumber": sub,
        "approximateArrivalTimestamp": arrived_ms,
    }


class FakeDaemon:
    """Sends actions, answers checkpoints (recording them), collects the processor's lines."""

    def __init__(self, write: Callable[[str], None], output: IO[str]) -> None:
        self._write = write
        self._lines: queue.Queue[object] = queue.Queue()
        self.checkpoints: list[tuple[str | None, int | None]] = []
        #: Error names to answer the next checkpoint requests with (then success again).
        self.checkpoint_errors: list[str] = []
        threading.Thread(target=self._pump, args=(output,), daemon=True).start()

    def _pump(self, output: IO[str]) -> None:
        for line in output:
            if line.strip():
                self._lines.put(json.loads(line))
        self._lines.put(_EOF)

    def _next(self) -> dict[str, Any]:
        try:
            item = self._lines.get(timeout=_TIMEOUT_S)
        except queue.Empty:
            raise AssertionError(f"no answer from the record processor in {_TIMEOUT_S} s") from None
        if item is _EOF:
            raise ProcessorExited("the record processor closed its output")
        assert isinstance(item, dict)
        return item

    def send(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """One action, to its status line; returns the checkpoint requests made meanwhile."""
        self._write(json.dumps(message) + "\n")
        requests: list[dict[str, Any]] = []
        while True:
            reply = self._next()
            if reply["action"] == "status":
                assert reply["responseFor"] == message["action"]
                return requests
            assert reply["action"] == "checkpoint", reply
            requests.append(reply)
            error = self.checkpoint_errors.pop(0) if self.checkpoint_errors else None
            if error is None:
                self.checkpoints.append((reply["sequenceNumber"], reply["subSequenceNumber"]))
            answer = {
                "action": "checkpoint",
                "checkpoint": reply["sequenceNumber"],
                "sequenceNumber": reply["sequenceNumber"],
                "subSequenceNumber": reply["subSequenceNumber"],
                "error": error,
            }
            self._write(json.dumps(answer) + "\n")

    def initialize(self, shard_id: str = "shardId-000000000000") -> None:
        self.send(
            {
                "action": "initialize",
                "shardId": shard_id,
                "sequenceNumber": "TRIM_HORIZON",
                "subSequenceNumber": 0,
            }
        )

    def process_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.send({"action": "processRecords", "millisBehindLatest": 0, "records": records})

    def lease_lost(self) -> list[dict[str, Any]]:
        return self.send({"action": "leaseLost"})

    def shard_ended(self) -> list[dict[str, Any]]:
        return self.send({"action": "shardEnded"})

    def shutdown_requested(self) -> list[dict[str, Any]]:
        return self.send({"action": "shutdownRequested"})


class ThreadedProcessor:
    """``KCLProcess`` of a processor in a thread, over pipes; keeps how the thread ended."""

    def __init__(self) -> None:
        self.exit: BaseException | None = None


@contextmanager
def in_thread(processor: Any) -> Iterator[tuple[FakeDaemon, ThreadedProcessor]]:
    """Drive ``processor`` through amazon_kclpy's ``KCLProcess`` as the daemon would."""
    from amazon_kclpy import kcl

    to_processor_r, to_processor_w = os.pipe()
    from_processor_r, from_processor_w = os.pipe()
    stdin = os.fdopen(to_processor_r, "r", encoding="utf-8")
    stdout = os.fdopen(from_processor_w, "w", encoding="utf-8")
    daemon_in = os.fdopen(to_processor_w, "w", buffering=1, encoding="utf-8")
    daemon_out = os.fdopen(from_processor_r, "r", encoding="utf-8")
    state = ThreadedProcessor()

    def run() -> None:
        try:
            kcl.KCLProcess(processor, input_file=stdin, output_file=stdout).run()
        except BaseException as error:  # SystemExit included: that is what we look at
            state.exit = error
        finally:
            stdout.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def write(line: str) -> None:
        daemon_in.write(line)
        daemon_in.flush()

    try:
        yield FakeDaemon(write, daemon_out), state
    finally:
        daemon_in.close()
        thread.join(_TIMEOUT_S)
        stdin.close()
        daemon_out.close()


@contextmanager
def in_subprocess(
    argv: list[str], *, env: dict[str, str], cwd: str
) -> Iterator[tuple[FakeDaemon, subprocess.Popen[str], list[str]]]:
    """Start a record processor process, as the daemon does, and talk to it.

    Yields the daemon, the process and its stderr lines (drained as they come, as the
    daemon does, so a chatty processor never blocks on a full pipe).
    """
    process = subprocess.Popen(  # noqa: S603 - the caller's own processor command
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    stderr: list[str] = []
    drain = threading.Thread(target=lambda: stderr.extend(process.stderr or []), daemon=True)
    drain.start()

    def write(line: str) -> None:
        assert process.stdin is not None
        process.stdin.write(line)
        process.stdin.flush()

    try:
        yield FakeDaemon(write, process.stdout), process, stderr
    finally:
        if process.stdin and not process.stdin.closed:
            process.stdin.close()
        try:
            process.wait(_TIMEOUT_S)
        finally:
            if process.poll() is None:
                process.kill()
            drain.join(_TIMEOUT_S)
