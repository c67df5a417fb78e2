"""Functions run concurrently: each with its own environment and log, none waiting for another.

Synchronised with events only (never with timings): a wait that times out means a function
was blocked by another one, which is the defect these tests exist to catch.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Logger

from wattstream.hosting.lambda_model import Function, InvokeResult, resolve_handler
from wattstream.hosting.template import FunctionSpec

#: Generous liveness bound: only reached when one function is blocked by another.
STUCK_S = 30


def spec(name: str, **environment: str) -> FunctionSpec:
    return FunctionSpec(
        logical_id=name,
        name=f"t1-{name}",
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:t1-{name}",
        handler="probe.handler",
        code_uri=".",
        timeout_s=60,
        memory_mb=128,
        environment=environment,
    )


class Entry:
    """A shell entry point as the shells build them: ``bind(environment) -> handler``."""

    def __init__(self, body: Callable[[Mapping[str, str], dict[str, Any]], Any]) -> None:
        self.body = body
        self.bound: list[dict[str, str]] = []

    def bind(self, environment: Mapping[str, str]) -> Callable[[dict[str, Any], Any], Any]:
        self.bound.append(dict(environment))
        frozen = dict(environment)
        return lambda event, context: self.body(frozen, event)

    def reset(self) -> None:
        self.bound.clear()


def in_thread(call: Callable[[], InvokeResult]) -> tuple[threading.Thread, list[InvokeResult]]:
    results: list[InvokeResult] = []
    thread = threading.Thread(target=lambda: results.append(call()), daemon=True)
    thread.start()
    return thread, results


def test_function_binds_its_own_environment_once_and_leaves_os_environ_alone():
    seen: list[tuple[str, str]] = []
    entry_a = Entry(lambda env, event: seen.append(("a", env["STREAM"])) or {})
    entry_b = Entry(lambda env, event: seen.append(("b", env["STREAM"])) or {})
    a = Function(spec("A", STREAM="stream-a"), entry_a, runtime_environment={"AWS_REGION": "r"})
    b = Function(spec("B", STREAM="stream-b"), entry_b)

    for _ in range(2):
        assert not a.invoke({}).failed
        assert not b.invoke({}).failed

    assert seen == [("a", "stream-a"), ("b", "stream-b")] * 2
    assert len(entry_a.bound) == len(entry_b.bound) == 1  # a cold start per function
    assert entry_a.bound[0]["AWS_LAMBDA_FUNCTION_NAME"] == "t1-A"
    assert entry_a.bound[0]["AWS_REGION"] == "r"
    assert "STREAM" not in os.environ


def test_function_slow_one_does_not_block_another():
    slow_started, release = threading.Event(), threading.Event()

    def slow(env: Mapping[str, str], event: dict[str, Any]) -> dict[str, Any]:
        slow_started.set()
        assert release.wait(STUCK_S), "never released"
        return {}

    fast_seen: list[str] = []
    slow_fn = Function(spec("Slow", STREAM="slow"), Entry(slow))
    fast_fn = Function(
        spec("Fast", STREAM="fast"),
        Entry(lambda env, event: fast_seen.append(env["STREAM"]) or {}),
    )

    slow_thread, slow_results = in_thread(lambda: slow_fn.invoke({}))
    assert slow_started.wait(STUCK_S)
    fast_thread, fast_results = in_thread(lambda: fast_fn.invoke({}))
    fast_thread.join(STUCK_S)

    assert not fast_thread.is_alive(), "the fast function waited for the slow one"
    assert fast_seen == ["fast"]
    assert not fast_results[0].failed
    assert not release.is_set()  # the slow one is still in its invocation
    release.set()
    slow_thread.join(STUCK_S)
    assert not slow_results[0].failed


def test_function_output_goes_to_its_own_log_while_others_run():
    """print (EMF metrics) and a Powertools Logger built at bind time each reach the log of
    the function whose invocation wrote them, while two invocations overlap."""
    a_printed, b_done = threading.Event(), threading.Event()

    class LoggingEntry(Entry):
        def bind(self, environment: Mapping[str, str]) -> Callable[[dict[str, Any], Any], Any]:
            logger = Logger(service=f"probe-{environment['NAME']}-{id(self)}")
            handler = super().bind(environment)

            def handle(event: dict[str, Any], context: Any) -> Any:
                logger.info("logged by %s", environment["NAME"])
                return handler(event, context)

            return handle

    def body_a(env: Mapping[str, str], event: dict[str, Any]) -> dict[str, Any]:
        print("printed by a, before")
        a_printed.set()
        assert b_done.wait(STUCK_S)
        print("printed by a, after")
        return {}

    def body_b(env: Mapping[str, str], event: dict[str, Any]) -> dict[str, Any]:
        print("printed by b")
        return {}

    log_a, log_b = io.StringIO(), io.StringIO()
    a = Function(spec("A", NAME="a"), LoggingEntry(body_a), log=log_a)
    b = Function(spec("B", NAME="b"), LoggingEntry(body_b), log=log_b)

    thread_a, results_a = in_thread(lambda: a.invoke({}))
    assert a_printed.wait(STUCK_S)
    assert not b.invoke({}).failed
    b_done.set()
    thread_a.join(STUCK_S)

    assert not results_a[0].failed
    text_a, text_b = log_a.getvalue(), log_b.getvalue()
    assert "printed by a, before" in text_a
    assert "printed by a, after" in text_a
    assert "logged by a" in text_a
    assert "printed by b" in text_b
    assert "logged by b" in text_b
    assert "by b" not in text_a
    assert "by a" not in text_b


def test_function_error_traceback_goes_to_its_log():
    def boom(env: Mapping[str, str], event: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    log = io.StringIO()
    result = Function(spec("A"), Entry(boom), log=log).invoke({})

    assert result.error == "RuntimeError: boom"
    assert "Traceback" in log.getvalue()
    assert "RuntimeError: boom" in log.getvalue()


def test_resolve_handler_returns_a_bindable_entry_as_is(tmp_path, monkeypatch):
    (tmp_path / "bindable_probe.py").write_text(
        "class _Entry:\n"
        "    def bind(self, environment):\n"
        "        return lambda event, context: environment['STACK']\n"
        "    def reset(self):\n"
        "        pass\n"
        "handler = _Entry()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    function_spec = spec("A", STACK="mine")
    function_spec = FunctionSpec(**{**function_spec.__dict__, "handler": "bindable_probe.handler"})

    entry = resolve_handler(function_spec, tmp_path)

    assert hasattr(entry, "bind")
    assert Function(function_spec, entry).invoke({}).response == "mine"
