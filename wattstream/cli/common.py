"""What every command group of the ``wattstream`` CLI shares: the console, the settings,
the running local stack, ports, Ctrl-C, and configuring this process like a function.

Command modules import from here and from each other's public names only; none imports
the root group (:mod:`wattstream.cli.root`), which imports them all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from wattstream.settings import LocalSettings

console = Console(stderr=True)


def local_settings(ctx: click.Context | None = None) -> LocalSettings:
    """The invocation's settings (read once from WATTSTREAM_* variables, then shared)."""
    ctx = ctx or click.get_current_context()
    settings: LocalSettings = ctx.ensure_object(dict).setdefault("settings", LocalSettings())
    return settings


def check_ports_free(settings: LocalSettings, *fields: str) -> None:
    """Fail fast, before anything starts, when a port we would listen on is taken.

    ``fields`` are the settings' port fields (``port``, ``ingest_port``, ...); the error
    names their variables (WATTSTREAM_PORT, ...) and a command that works.
    """
    from wattstream.local.server import busy_ports

    wanted = {f"WATTSTREAM_{field.upper()}": getattr(settings, field) for field in fields}
    busy = busy_ports(settings.host, wanted)
    if not busy:
        return
    taken = ", ".join(f"{port} ({name})" for name, port in busy.items())
    fix = " ".join(f"{name}={port + 1}" for name, port in busy.items())
    raise click.ClickException(
        f"port in use on {settings.host}: {taken}. Is another `wattstream run` / `make run` "
        f"running (`wattstream status` shows it)? Stop it with Ctrl-C, or use other ports, "
        f"e.g. `{fix} make run`."
    )


def wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM (how a user stops a long-running command)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass


def load_stack(settings: LocalSettings) -> Any:
    """The running local stack's description, or a clear error saying how to start one.

    Every command that talks to the local stack comes through here, so each one works on
    a machine with no AWS credentials (see ``connect_local_stack``).
    """
    from wattstream.hosting.template import StackError
    from wattstream.local.server import connect_local_stack

    try:
        return connect_local_stack(settings.stack_file)
    except StackError as error:
        raise click.ClickException(str(error)) from error


_FUNCTION_LOGS: dict[Path, Any] = {}


@contextlib.contextmanager
def function_log(log_dir: Path | None, name: str) -> Iterator[None]:
    """Build an in-process service here: its loggers keep this file as their stdout.

    Powertools loggers write JSON to the stdout of the moment they are made; made here,
    that is ``LOG_DIR/NAME.log`` (kept open for the process's life), not the console.
    """
    if log_dir is None:
        yield
        return
    path = log_dir / f"{name}.log"
    if path not in _FUNCTION_LOGS:
        log_dir.mkdir(parents=True, exist_ok=True)
        _FUNCTION_LOGS[path] = path.open("a", buffering=1, encoding="utf-8")
    with contextlib.redirect_stdout(_FUNCTION_LOGS[path]):
        yield


def use_stack_environment(description: Any, function_logical_id: str) -> None:
    """Configure this process like the template's function: same variables, local endpoint.

    The composition roots then read their settings from the environment exactly as they
    do on Lambda; nothing in them knows the stack is local.
    """
    os.environ.update(description.functions[function_logical_id].environment)
    os.environ["AWS_ENDPOINT_URL"] = description.endpoint_url
    os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = description.region


STACK_NAME_OPTION = click.option(
    "--stack-name",
    envvar="WATTSTREAM_KCL_STACK_NAME",
    default=None,
    help="Deployed CloudFormation stack (default: the running local stack).",
)


def bind_consumer(function: str, stack_name: str | None) -> tuple[Any, Any, dict[str, str], str]:
    """(binding, clients, runtime environment, stack name) of a long-running consumer.

    With ``stack_name``, the deployed CloudFormation stack (AWS, or whatever
    ``AWS_ENDPOINT_URL`` names); without it, the running local stack. The KCL and Kafka
    hosts bind the same way.
    """
    from wattstream.hosting.kcl.binding import from_cloudformation, from_local_stack

    if stack_name:
        from shared.settings import AwsSettings

        aws = AwsSettings()
        return from_cloudformation(stack_name, function, aws.client), aws.client, {}, stack_name
    from wattstream.local.server import client_factory, connect_local_stack

    description = connect_local_stack(LocalSettings().stack_file)
    clients = client_factory(description.endpoint_url, description.region)
    environment = {"AWS_ENDPOINT_URL": description.endpoint_url}
    binding = from_local_stack(description, function)
    return binding, clients, environment, description.stack_name
