"""The Lambda model: a template function bound to its handler, invoked as Lambda invokes it.

:class:`Function` (environment, context, timeout, reply check), :class:`LambdaContext`,
:class:`InvokeResult`, the Kinesis event Lambda builds (:func:`kinesis_event`) and the
partial batch response it reads (:func:`batch_item_failures`). The local runner, the KCL
host and the faust host invoke handlers through this, so a handler sees the same event and
context from each of them and from Lambda.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TextIO, cast

from wattstream.hosting.template import FunctionSpec

log = logging.getLogger("wattstream.hosting")

Handler = Callable[[dict[str, Any], Any], Any]
Clock = Callable[[], float]


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_s: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local-runner"
    _started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.log_group_name = f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self._started)) * 1000))


@dataclass(frozen=True)
class InvokeResult:
    """How an invocation ended: a response, or a function error with its reason."""

    response: Any = None
    error: str | None = None
    duration_s: float = 0.0

    @property
    def failed(self) -> bool:
        return self.error is not None


# --- Output: each function's stdout to its own log, without swapping sys.stdout ---------

#: The log of the function invoking in this thread (None: the process's own stdout).
_FUNCTION_OUTPUT: ContextVar[TextIO | None] = ContextVar("wattstream_function_output", default=None)
_WRITE_LOCK = threading.Lock()


class RoutedStdout(io.TextIOBase):
    """``sys.stdout`` for hosted functions: each write goes to the log of the function that is
    invoking in the writing thread, everything else to the stdout it replaced.

    Installed once (:func:`route_stdout`) instead of ``redirect_stdout`` per invocation,
    which swaps a process-wide global and races between threads. Powertools' Logger keeps
    the ``sys.stdout`` of its construction (a ``StreamHandler``) and Metrics ``print``; both
    reach this object as long as it is installed before the handler's dependencies are
    built, and both are routed by the context of the thread that writes. Threads a handler
    starts itself do not inherit that context: their output goes to the process's stdout.
    """

    def __init__(self, fallback: TextIO) -> None:
        self.fallback = fallback

    def _target(self) -> TextIO:
        target = _FUNCTION_OUTPUT.get() or self.fallback
        if not target.closed:
            return target
        # A closed log (its runner stopped) or a stdout replaced and closed since (a test
        # harness's capture): write where this process's output goes now, never raise.
        current = sys.stdout
        if current is not self and not current.closed:
            return current
        return sys.__stdout__ or self.fallback

    def write(self, text: str) -> int:
        target = self._target()
        with _WRITE_LOCK:  # one line is never interleaved with another thread's
            target.write(text)
        return len(text)

    def flush(self) -> None:
        self._target().flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._target().isatty()

    def fileno(self) -> int:
        return self.fallback.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.fallback, "encoding", "utf-8"))


def route_stdout() -> None:
    """Make ``sys.stdout`` a :class:`RoutedStdout` (again, if someone replaced it since)."""
    if not isinstance(sys.stdout, RoutedStdout):
        sys.stdout = RoutedStdout(sys.stdout)


@contextmanager
def function_output(log: TextIO | None) -> Iterator[None]:
    """Route this thread's (and this context's) stdout to ``log`` while inside."""
    if log is None:
        yield
        return
    route_stdout()
    token = _FUNCTION_OUTPUT.set(log)
    try:
        yield
    finally:
        _FUNCTION_OUTPUT.reset(token)


# --- Handlers -----------------------------------------------------------------------------


class BindableHandler(Protocol):
    """A shell's entry point: ``bind(environment)`` builds a handler with fresh dependencies
    from that mapping alone (nothing read from ``os.environ``); ``reset()`` drops them."""

    def bind(self, environment: Mapping[str, str]) -> Handler: ...

    def reset(self) -> None: ...


def is_bindable(handler: Any) -> bool:
    return callable(getattr(handler, "bind", None))


def resolve_handler(spec: FunctionSpec, template_dir: Path) -> Handler | BindableHandler:
    """Import ``module.attr`` from the Handler; ``CodeUri`` is the import root, as on Lambda.

    A shell entry with ``bind`` is returned as is: :class:`Function` binds it to its own
    environment, which builds fresh dependencies for the stack it serves. A plain handler
    function is the legacy case (see below).
    """
    module_name, _, attr = spec.handler.rpartition(".")
    if not module_name:
        raise ValueError(f"{spec.logical_id}: Handler {spec.handler!r} is not module.function")
    code_root = str((template_dir / spec.code_uri).resolve())
    if code_root not in sys.path:
        sys.path.append(code_root)
    module = importlib.import_module(module_name)
    handler = getattr(module, attr, None)
    if is_bindable(handler):
        return cast(BindableHandler, handler)
    if not callable(handler):
        raise ValueError(f"{spec.logical_id}: {spec.handler!r} is not a callable handler")
    return cast(Handler, handler)


class Function:
    """A template function bound to its handler: invoked the way Lambda invokes it.

    Its environment is the template's variables plus what the Lambda runtime sets
    (region, function name, and ``AWS_ENDPOINT_URL`` so its clients reach the local
    stack). A handler with ``bind`` gets that environment passed in, once, on the first
    invocation (Lambda's cold start); functions then run concurrently, each with its own
    dependencies, and one never waits for another. With ``log`` its stdout (Powertools logs
    and EMF metrics) goes to that file, as it would go to CloudWatch Logs.
    """

    def __init__(
        self,
        spec: FunctionSpec,
        handler: Handler | BindableHandler,
        *,
        runtime_environment: Mapping[str, str] | None = None,
        log: TextIO | None = None,
    ) -> None:
        self.spec = spec
        self.environment: dict[str, str] = {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            **(runtime_environment or {}),
            **spec.environment,
        }
        self._entry = handler
        self._bound: Handler | None = None
        self._bind_lock = threading.Lock()
        self._log = log
        if log is not None:
            route_stdout()

    def _handler(self) -> Handler:
        """The handler to call: bound to this function's environment on first use."""
        if not is_bindable(self._entry):
            return cast(Handler, self._entry)
        if self._bound is None:
            with self._bind_lock:  # this function's cold start only; others go on
                if self._bound is None:
                    entry = cast(BindableHandler, self._entry)
                    self._bound = entry.bind(dict(self.environment))
        return self._bound

    def invoke(self, event: dict[str, Any]) -> InvokeResult:
        context = LambdaContext(
            function_name=self.spec.name,
            invoked_function_arn=self.spec.arn,
            memory_limit_in_mb=self.spec.memory_mb,
            timeout_s=self.spec.timeout_s,
        )
        started = time.monotonic()
        with function_output(self._log):
            try:
                response = self._handler()(event, context)
                json.dumps(response)  # Lambda must serialise the reply, or the call fails
            except Exception as error:
                log.exception("%s failed", self.spec.logical_id)
                if self._log:
                    with _WRITE_LOCK:
                        self._log.write(traceback.format_exc())
                return InvokeResult(
                    error=f"{type(error).__name__}: {error}",
                    duration_s=time.monotonic() - started,
                )
        duration = time.monotonic() - started
        if duration > self.spec.timeout_s:
            return InvokeResult(
                error=f"Task timed out after {self.spec.timeout_s} seconds", duration_s=duration
            )
        return InvokeResult(response=response, duration_s=duration)


def batch_item_failures(response: Any, identifiers: list[str]) -> set[str] | None:
    """The failed item ids of a partial batch response, or None if the reply is invalid.

    Lambda treats a malformed reply, or an id that is not in the batch, as a failure of
    the whole batch; we do the same (None).
    """
    if response is None:
        return set()
    if not isinstance(response, dict) or "batchItemFailures" not in response:
        return set()
    failures = response["batchItemFailures"]
    if not isinstance(failures, list):
        return None
    result = set()
    known = set(identifiers)
    for failure in failures:
        item = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(item, str) or item not in known:
            return None
        result.add(item)
    return result


@dataclass
class MappingStats:
    """Counters shown by ``wattstream status`` and asserted by tests."""

    invocations: int = 0
    records: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    bisects: int = 0
    sent_to_destination: int = 0
    millis_behind_latest: int = 0


def epoch_seconds(value: Any) -> float:
    """A boto3 timestamp (datetime) or epoch seconds, as epoch seconds."""
    return value.timestamp() if isinstance(value, datetime) else float(value)


def kinesis_event(
    records: list[dict[str, Any]],
    *,
    shard_id: str,
    stream_arn: str,
    function_arn: str,
    region: str,
) -> dict[str, Any]:
    """A Lambda Kinesis event of GetRecords-shaped records (``PartitionKey``, ``Data``, ...).

    Shared with the KCL host (:mod:`wattstream.kcl`), so a handler sees the same event
    from the local runner, from Lambda and from a KCL worker.
    """
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"],
                    "data": base64.b64encode(r["Data"]).decode("ascii"),
                    "approximateArrivalTimestamp": epoch_seconds(r["ApproximateArrivalTimestamp"]),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard_id}:{r['SequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": function_arn,
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            }
            for r in records
        ]
    }
