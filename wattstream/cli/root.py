"""The ``wattstream`` root group: options every command shares, and the command groups.

Only commands that work are offered; each has ``--help``. Long work shows progress.
This module imports every group module; none of them imports it (no import circle).
"""

from __future__ import annotations

import logging
from typing import Any

import click

from wattstream.cli import gateway, ingest, kafka, kcl, monthly, realtime, run, stack, train
from wattstream.cli.common import console, local_settings


class _Commands(click.Group):
    """Ctrl-C is how a user stops a command: one line and exit 0, never ``Aborted!``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            name = ctx.invoked_subcommand or "wattstream"
            console.print(f"stopped (Ctrl-C): `wattstream {name}` interrupted")
            ctx.exit(0)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
    local_settings(ctx)
    ctx.obj["verbose"] = verbose


@click.group()
def serve() -> None:
    """Serve a service's HTTP API locally (the same app the Lambda serves)."""


serve.add_command(ingest.serve_ingest, "ingest")
serve.add_command(gateway.serve_gateway, "gateway")

for _command in (
    stack.stack,
    stack.status,
    stack.runner,
    run.run,
    ingest.replay,
    ingest.simulate,
    ingest.upload,
    serve,
    gateway.token,
    train.train,
    realtime.realtime,
    monthly.monthly,
    kcl.kcl,
    kafka.kafka,
):
    main.add_command(_command)
