"""``wattstream kcl``: the KCL consumers' commands (also ``python -m wattstream.kcl``).

``run FUNCTION``      the record processor the MultiLangDaemon starts (its executableName)
``properties FUNCTION``  the daemon's properties for that consumer, rendered for a stack
``list``              the template's Kinesis consumers and their properties files
``daemon FUNCTION``   the Java MultiLangDaemon for that consumer (local stack: behind an
                      HTTP/2 front, see :mod:`wattstream.local.kcl_daemon`); Ctrl-C stops it

With ``--stack-name`` (or ``WATTSTREAM_KCL_STACK_NAME``) a consumer is bound to that
CloudFormation stack (AWS, or whatever ``AWS_ENDPOINT_URL`` names); without it, to the
running local stack (``wattstream stack up``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import click

from wattstream.cli.common import STACK_NAME_OPTION, bind_consumer
from wattstream.hosting.kcl.binding import kinesis_consumers
from wattstream.hosting.kcl.host import (
    build_processor,
    properties_file,
    protocol_streams,
    render_properties,
    serve,
)
from wattstream.hosting.template import StackError, load_template
from wattstream.settings import LocalSettings


@click.group()
def kcl() -> None:
    """Long-running Kinesis consumers: KCL MultiLangDaemon record processors."""


@kcl.command("run")
@click.argument("function")
@STACK_NAME_OPTION
def run(function: str, stack_name: str | None) -> None:
    """Process one shard for FUNCTION over stdin/stdout (started by the MultiLangDaemon)."""
    input_file, output_file, error_file = protocol_streams()  # before anything can print
    logging.basicConfig(
        stream=error_file,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        binding, clients, environment, _ = bind_consumer(function, stack_name)
    except StackError as error:
        raise click.ClickException(str(error)) from error
    processor = build_processor(
        binding, clients=clients, runtime_environment=environment, log=error_file
    )
    serve(processor, input_file, output_file, error_file)


@kcl.command("properties")
@click.argument("function")
@STACK_NAME_OPTION
def properties(function: str, stack_name: str | None) -> None:
    """Print FUNCTION's deploy/kcl properties with the stack's stream and region."""
    try:
        binding, _, _, name = bind_consumer(function, stack_name)
    except StackError as error:
        raise click.ClickException(str(error)) from error
    sys.stdout.write(render_properties(binding, name, local_endpoints=_local_endpoints(stack_name)))


def _local_endpoints(stack_name: str | None, kinesis: str | None = None) -> tuple[str, str] | None:
    """(Kinesis, DynamoDB) endpoints of the local stack; None on AWS (no override at all).

    The daemon's Kinesis client speaks HTTP/2 only: ``wattstream kcl daemon`` puts an
    HTTP/2 front before moto and names it here (``kinesis``).
    """
    if stack_name:
        return None
    from wattstream.local.server import connect_local_stack

    endpoint = connect_local_stack(LocalSettings().stack_file).endpoint_url
    return (kinesis or endpoint, endpoint)


@kcl.command("daemon")
@click.argument("function")
@STACK_NAME_OPTION
def daemon(function: str, stack_name: str | None) -> None:
    """Run the Java KCL MultiLangDaemon for FUNCTION in the foreground (Ctrl-C stops it)."""
    import time

    from wattstream.local.h2c import H2cFront
    from wattstream.local.kcl_daemon import LOCAL_TUNING, KclDaemon, missing

    if missing():
        raise click.ClickException(str(missing()))
    try:
        binding, _, _, name = bind_consumer(function, stack_name)
    except StackError as error:
        raise click.ClickException(str(error)) from error
    local = _local_endpoints(stack_name)
    front = None if local is None else H2cFront(local[1])
    if front is not None:
        local = _local_endpoints(stack_name, kinesis=front.start())
    process = KclDaemon(
        render_properties(binding, name, local_endpoints=local) + (LOCAL_TUNING if local else ""),
        LocalSettings().state_dir / "kcl",
        name=f"{name}-{function}",
        env=dict(os.environ),
        local=front is not None,
    )
    process.start()
    click.echo(f"KCL MultiLangDaemon for {function}: log in {process.log_path} (Ctrl-C stops)")

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # a supervisor's stop ends the daemon too
    try:
        while process.running():
            time.sleep(1)
        raise click.ClickException(f"the daemon exited; see {process.log_path}")
    except KeyboardInterrupt:
        click.echo("stopping the daemon (its processors checkpoint and end)")
    finally:
        process.stop()
        if front is not None:
            front.stop()


@kcl.command("list")
def list_consumers() -> None:
    """The template's Kinesis consumers, their streams and properties files."""
    settings = LocalSettings()
    for function, stream in sorted(kinesis_consumers(load_template(settings.template)).items()):
        click.echo(f"{function:<28} {stream:<18} {properties_file(function)}")
