"""Commands of the gateway: ``serve gateway`` (the API and the dashboard) and ``token``.

The gateway never imports the ingest service: the replay the dashboard can start is
wired here, in the composition root, behind the gateway's ``ReplayStarter`` port.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from wattstream.cli.common import (
    check_ports_free,
    console,
    function_log,
    load_stack,
    local_settings,
    use_stack_environment,
    wait_for_interrupt,
)
from wattstream.cli.ingest import replay_id_prefix, stack_publisher_and_quarantine
from wattstream.settings import LocalSettings, default_data_slice


def _api_deps(description: Any, log_dir: Path | None = None) -> Any:
    from services.gateway.adapters.replay import ThreadedReplayStarter
    from services.gateway.shells.api_lambda import dead_letter_queues, deps_from_environment

    def run_replay_job(request: Any, on_progress: Any) -> Any:
        from services.ingest.core.replay import parse_speed
        from services.ingest.sources import ReplayOptions, run_replay

        publisher, quarantine = stack_publisher_and_quarantine(description)
        return run_replay(
            default_data_slice(),
            publisher,
            ReplayOptions(
                speed=parse_speed(request.speed),
                households=request.households,
                start=request.start,
                id_prefix=replay_id_prefix(description, request.households, None),
            ),
            quarantine=quarantine,
            on_progress=on_progress,
        )

    stack_publisher_and_quarantine(description)  # resolves settings early: clear errors
    use_stack_environment(description, "GatewayApiFunction")
    os.environ["GATEWAY_DEAD_LETTER_QUEUES"] = json.dumps(dead_letter_queues(description.outputs))
    with function_log(log_dir, "GatewayApi"):  # its JSON logs go to the file, not the console
        return deps_from_environment(replay=ThreadedReplayStarter(run_replay_job))


def start_gateway(
    description: Any, settings: LocalSettings, *, dashboard: bool, announce: bool = True
) -> list[Any]:
    """Start the API (and the dashboard) against the stack; returns what to stop."""
    from services.gateway.shells.api_app import create_app
    from services.gateway.shells.serve import start_api, start_dashboard

    deps = _api_deps(description, settings.state_dir / "logs")
    api = start_api(create_app(deps), host=settings.host, port=settings.api_port)
    if announce:
        console.print(f"gateway API on {api.url} (OpenAPI at {api.url}/docs)")
    running: list[Any] = [api]
    if dashboard:
        log = (settings.state_dir / "dashboard.log").open("ab")
        process = start_dashboard(
            api.url, host=settings.host, port=settings.dashboard_port, log=log
        )  # no token: each visitor signs in with their own (`wattstream token`)
        running.append(process)
        if announce:
            console.print(
                f"[bold green]dashboard on http://{settings.host}:{settings.dashboard_port}[/]"
            )
    return running


def stop_all(running: list[Any]) -> None:
    for item in reversed(running):
        if hasattr(item, "terminate"):
            item.terminate()
            item.wait(10)
        else:
            item.stop()


@click.command()
@click.option(
    "--household",
    "households",
    multiple=True,
    metavar="ID",
    help="A household the token may read (repeatable).",
)
@click.option("--operator", is_flag=True, help="A token that reads every household.")
@click.option(
    "--ttl",
    "ttl_s",
    default=86_400,
    show_default=True,
    type=click.IntRange(min=1),
    help="Lifetime in seconds.",
)
@click.pass_context
def token(ctx: click.Context, households: tuple[str, ...], operator: bool, ttl_s: int) -> None:
    """Issue a signed, expiring bearer token for the gateway API (printed on stdout)."""
    from services.gateway.core.tokens import issue_token

    if operator == bool(households):
        raise click.UsageError("give either --operator or at least one --household")
    description = load_stack(local_settings(ctx))
    secret = description.functions["GatewayApiFunction"].environment["TOKEN_SECRET"]
    click.echo(issue_token(secret, households=households, operator=operator, ttl_s=ttl_s))


@click.command("gateway")
@click.option(
    "--dashboard/--no-dashboard",
    default=True,
    show_default=True,
    help="Also start the Streamlit dashboard.",
)
@click.pass_context
def serve_gateway(ctx: click.Context, dashboard: bool) -> None:
    """The gateway API (and dashboard) against the running local stack, until Ctrl-C."""

    settings = local_settings(ctx)
    check_ports_free(settings, "api_port", *(("dashboard_port",) if dashboard else ()))
    running = start_gateway(load_stack(settings), settings, dashboard=dashboard)
    try:
        wait_for_interrupt()
    finally:
        stop_all(running)
