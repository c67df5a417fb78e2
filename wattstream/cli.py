"""The ``wattstream`` command line: the composition root of the local tooling.

Only commands that work are offered; each has ``--help``. Long work shows progress.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from wattstream.settings import LocalSettings, default_data_slice

console = Console(stderr=True)


def _settings(ctx: click.Context) -> LocalSettings:
    return ctx.ensure_object(dict).setdefault("settings", LocalSettings())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """wattstream: smart-meter readings streamed, forecast and served.

    Settings come from WATTSTREAM_* environment variables (WATTSTREAM_PORT,
    WATTSTREAM_STATE_DIR, ...); AWS_ENDPOINT_URL points the AWS clients elsewhere.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _settings(ctx)


@main.group()
def stack() -> None:
    """The embedded AWS stack (moto server), provisioned from deploy/template.yaml."""


def _parse_parameters(values: tuple[str, ...]) -> dict[str, str]:
    parameters = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="--parameter")
        parameters[key] = raw
    return parameters


def _start_stack(settings: LocalSettings, parameters: dict[str, str]) -> tuple[Any, Any]:
    from wattstream.local.server import EmbeddedAws, provision

    server = EmbeddedAws(settings.host, settings.port)
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
    _print_resources(description)
    console.print(
        f"[green]local stack up[/] at {endpoint}  (state: {settings.stack_file})\n"
        f"  use it from another shell:  export AWS_ENDPOINT_URL={endpoint} "
        "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
        f"AWS_DEFAULT_REGION={settings.region}"
    )
    return server, description


def _print_resources(description: Any) -> None:
    table = Table(title=f"stack {description.stack_name}", show_lines=False)
    table.add_column("resource")
    table.add_column("physical id")
    for logical, physical in sorted(description.resources.items()):
        table.add_row(logical, physical)
    for logical, kind in description.not_emulated.items():
        table.add_row(logical, f"[dim]{kind}: AWS only, not emulated locally[/]")
    console.print(table)


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass


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
    settings = _settings(ctx)
    server, _ = _start_stack(settings, _parse_parameters(parameters))
    try:
        _wait_for_interrupt()
    finally:
        server.stop()
        settings.stack_file.unlink(missing_ok=True)
        console.print("local stack stopped")


@main.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show the running local stack: streams, queue depths (DLQs included), buckets."""
    from wattstream.local.stack import StackDescription, StackError
    from wattstream.local.status import collect_status

    settings = _settings(ctx)
    try:
        description = StackDescription.load(settings.stack_file)
        rows = collect_status(description)
    except StackError as error:
        raise click.ClickException(str(error)) from error
    table = Table(title=f"stack {description.stack_name} at {description.endpoint_url}")
    for column in ("kind", "resource", "state"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _build_runner(settings: LocalSettings, description: Any, functions: set[str] | None) -> Any:
    from wattstream.local.runner import EventSourceRunner
    from wattstream.local.server import client_factory, ensure_local_credentials

    ensure_local_credentials()
    return EventSourceRunner(
        description,
        clients=client_factory(description.endpoint_url, description.region),
        checkpoint_path=settings.checkpoint_file(description.stack_name, description.created_at),
        functions=functions,
    )


@main.command()
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
    from wattstream.local.stack import StackDescription, StackError

    settings = _settings(ctx)
    try:
        description = StackDescription.load(settings.stack_file)
    except StackError as error:
        raise click.ClickException(str(error)) from error
    unknown = set(functions) - set(description.functions)
    if unknown:
        raise click.BadParameter(
            f"not in the template: {sorted(unknown)}; known: {sorted(description.functions)}",
            param_hint="--function",
        )
    event_runner = _build_runner(settings, description, set(functions) or None)
    if not event_runner.pollers:
        raise click.ClickException("the template has no functions with event sources to run")
    console.print(f"running {len(event_runner.pollers)} event source mappings; Ctrl-C stops")
    event_runner.start()
    try:
        _wait_for_interrupt()
    finally:
        event_runner.stop()


@main.command()
@click.option(
    "--data",
    "data_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="UCI household power file (.txt or .txt.gz); default: the shipped slice.",
)
@click.option("--household", default="uci-sceaux", show_default=True, help="Household id.")
@click.option("--once", is_flag=True, help="Exit once the data is loaded and processed.")
@click.pass_context
def run(ctx: click.Context, data_path: Path | None, household: str, once: bool) -> None:
    """Start everything built so far on real data: stack, handlers, and the data load.

    The local stack comes up from the template, the template's handlers start on the
    local runner, and the UCI data is published to the readings stream (aggregated
    records, through the Kinesis adapter) with a progress bar.
    """
    from shared.streams.kinesis import KinesisPublisher
    from wattstream.local.loader import publish_uci_file
    from wattstream.local.server import client_factory

    settings = _settings(ctx)
    path = data_path or default_data_slice()
    server, description = _start_stack(settings, {})
    event_runner = _build_runner(settings, description, None)
    event_runner.start()
    try:
        clients = client_factory(description.endpoint_url, description.region)
        publisher = KinesisPublisher(description.outputs["ReadingsStreamName"], clients("kinesis"))
        total = path.stat().st_size
        with Progress(
            TextColumn("[bold]loading[/] {task.description}"),
            BarColumn(),
            TextColumn("{task.fields[readings]:,} readings"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(path.name, total=None, readings=0)
            started = time.monotonic()
            report = publish_uci_file(
                path,
                publisher,
                household_id=household,
                on_progress=lambda r: progress.update(task, readings=r.readings_published),
            )
            progress.update(task, total=total, completed=total)
        console.print(
            f"published {report.readings_published:,} readings in {report.records:,} records "
            f"({report.bytes / max(report.readings_published, 1):.1f} bytes/reading) in "
            f"{time.monotonic() - started:.1f} s; {report.rows_missing:,} missing rows reported, "
            f"{report.rows_malformed:,} malformed"
        )
        if not event_runner.pollers:
            console.print(
                "[yellow]no template function consumes the streams yet[/]: the readings wait "
                "on the stream (see `wattstream status`)"
            )
        if not once:
            console.print("running; Ctrl-C stops")
            _wait_for_interrupt()
    finally:
        event_runner.stop()
        server.stop()
        settings.stack_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
