"""``wattstream stack up``, ``status`` and ``runner``: the local stack and its handlers.

:func:`start_stack` and :func:`build_runner` are what ``wattstream run`` starts too.
"""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from wattstream.cli.common import (
    check_ports_free,
    console,
    load_stack,
    local_settings,
    wait_for_interrupt,
)
from wattstream.settings import LocalSettings


@click.group()
def stack() -> None:
    """The embedded AWS stack (moto server), provisioned from deploy/template.yaml."""


def parse_parameters(values: tuple[str, ...]) -> dict[str, str]:
    """``--parameter KEY=VALUE`` options as template parameter overrides."""
    parameters = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="--parameter")
        parameters[key] = raw
    return parameters


def start_stack(
    settings: LocalSettings, parameters: dict[str, str], *, services: bool = False
) -> tuple[Any, Any]:
    """Start moto and provision the template; (server, description). ``services``: also
    check the ports of the APIs and the dashboard before anything starts."""
    from wattstream.local.server import EmbeddedAws, provision

    check_ports_free(
        settings,
        "port",
        *(("ingest_port", "api_port", "dashboard_port") if services else ()),
    )
    server = EmbeddedAws(
        settings.host, settings.port, log_file=settings.state_dir / "logs" / "moto.log"
    )
    try:
        endpoint = server.start()
    except OSError as error:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port} ({error}); is another stack "
            "running? Set WATTSTREAM_PORT to use another port."
        ) from error
    with console.status(f"provisioning {settings.template} on {endpoint} ..."):
        description = provision(
            settings.template,
            endpoint_url=endpoint,
            region=settings.region,
            stack_name=settings.stack_name,
            parameters=parameters,
        )
    description.save(settings.stack_file)
    if click.get_current_context().find_object(dict).get("verbose"):
        print_resources(description)
    console.print(f"[green]local stack up[/] at {endpoint}: {resource_summary(description)}")
    return server, description


def resource_summary(description: Any) -> str:
    """One line instead of the resource table (``wattstream status --resources`` has it)."""
    outputs = description.outputs
    streams = sum(k.endswith("StreamName") for k in outputs)
    buckets = sum(k.endswith("BucketName") for k in outputs)
    queues = sum(v.startswith("http") for v in description.resources.values())
    return (
        f"{len(description.resources)} resources ({streams} streams, {queues} queues, "
        f"{buckets} buckets, {len(description.functions)} functions), "
        f"{len(description.not_emulated)} AWS-only; `wattstream status --resources` lists them"
    )


def print_resources(description: Any) -> None:
    table = Table(title=f"stack {description.stack_name}", show_lines=False)
    table.add_column("resource")
    table.add_column("physical id")
    for logical, physical in sorted(description.resources.items()):
        table.add_row(logical, physical)
    for logical, kind in description.not_emulated.items():
        table.add_row(logical, f"[dim]{kind}: AWS only, not emulated locally[/]")
    console.print(table)


@stack.command("up")
@click.option(
    "-p",
    "--parameter",
    "parameters",
    multiple=True,
    metavar="KEY=VALUE",
    help="Template parameter override, e.g. ReadingsShardCount=8 (repeatable).",
)
@click.pass_context
def stack_up(ctx: click.Context, parameters: tuple[str, ...]) -> None:
    """Start the local stack and keep it running until Ctrl-C."""
    settings = local_settings(ctx)
    server, _ = start_stack(settings, parse_parameters(parameters))
    try:
        wait_for_interrupt()
    finally:
        server.stop()
        settings.stack_file.unlink(missing_ok=True)
        console.print("local stack stopped")


@click.command()
@click.option(
    "-r", "--resources", is_flag=True, help="Also list every resource and its physical id."
)
@click.pass_context
def status(ctx: click.Context, resources: bool) -> None:
    """Show the running local stack: streams, queue depths (DLQs included), buckets."""
    from wattstream.hosting.template import StackError
    from wattstream.local.status import collect_status

    description = load_stack(local_settings(ctx))
    try:
        rows = collect_status(description)
    except StackError as error:
        raise click.ClickException(str(error)) from error
    table = Table(title=f"stack {description.stack_name} at {description.endpoint_url}")
    for column in ("kind", "resource", "state"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    if resources:
        print_resources(description)
    console.print(table)
    console.print(
        f"state: {local_settings(ctx).stack_file}; from another shell: export "
        f"AWS_ENDPOINT_URL={description.endpoint_url} AWS_ACCESS_KEY_ID=testing "
        f"AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={description.region}"
    )


def build_runner(
    settings: LocalSettings,
    description: Any,
    functions: set[str] | None,
    *,
    batching_windows: bool = True,
    environment: dict[str, str] | None = None,
) -> Any:
    """The local event-source runner of the stack's mappings (``functions``: only those;
    ``environment``: variables every function gets, e.g. the Kafka bus)."""
    from wattstream.local.runner import EventSourceRunner
    from wattstream.local.server import client_factory

    return EventSourceRunner(
        description,
        clients=client_factory(description.endpoint_url, description.region),
        checkpoint_path=settings.checkpoint_file(description.stack_name, description.created_at),
        functions=functions,
        log_dir=settings.state_dir / "logs",
        batching_windows=batching_windows,
        environment=environment,
    )


@click.command()
@click.option(
    "-f",
    "--function",
    "functions",
    multiple=True,
    metavar="LOGICAL_ID",
    help="Run only this template function (repeatable); default: all with event sources.",
)
@click.pass_context
def runner(ctx: click.Context, functions: tuple[str, ...]) -> None:
    """Run the template's Lambda handlers against the running local stack, until Ctrl-C."""
    settings = local_settings(ctx)
    description = load_stack(settings)
    unknown = set(functions) - set(description.functions)
    if unknown:
        raise click.BadParameter(
            f"not in the template: {sorted(unknown)}; known: {sorted(description.functions)}",
            param_hint="--function",
        )
    event_runner = build_runner(settings, description, set(functions) or None)
    if not event_runner.pollers:
        raise click.ClickException("the template has no functions with event sources to run")
    console.print(f"running {len(event_runner.pollers)} event source mappings; Ctrl-C stops")
    event_runner.start()
    try:
        wait_for_interrupt()
    finally:
        event_runner.stop()
