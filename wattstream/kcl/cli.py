"""``wattstream kcl``: the KCL consumers' commands (register with ``main.add_command(kcl)``).

``run FUNCTION``      the record processor the MultiLangDaemon starts (its executableName)
``properties FUNCTION``  the daemon's properties for that consumer, rendered for a stack
``list``              the template's Kinesis consumers and their properties files

With ``--stack-name`` (or ``WATTSTREAM_KCL_STACK_NAME``) a consumer is bound to that
CloudFormation stack (AWS, or whatever ``AWS_ENDPOINT_URL`` names); without it, to the
running local stack (``wattstream stack up``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from wattstream.kcl.binding import Binding, from_cloudformation, from_local_stack, kinesis_consumers
from wattstream.kcl.host import (
    build_processor,
    properties_file,
    protocol_streams,
    render_properties,
    serve,
)
from wattstream.local.stack import StackError, load_template
from wattstream.settings import LocalSettings

_STACK_OPTION = click.option(
    "--stack-name",
    envvar="WATTSTREAM_KCL_STACK_NAME",
    default=None,
    help="Deployed CloudFormation stack (default: the running local stack).",
)


def bind(function: str, stack_name: str | None) -> tuple[Binding, Any, dict[str, str], str]:
    """(binding, clients, runtime environment, stack name) of a consumer."""
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


@click.group()
def kcl() -> None:
    """Long-running Kinesis consumers: KCL MultiLangDaemon record processors."""


@kcl.command("run")
@click.argument("function")
@_STACK_OPTION
def run(function: str, stack_name: str | None) -> None:
    """Process one shard for FUNCTION over stdin/stdout (started by the MultiLangDaemon)."""
    input_file, output_file, error_file = protocol_streams()  # before anything can print
    logging.basicConfig(
        stream=error_file, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        binding, clients, environment, _ = bind(function, stack_name)
    except StackError as error:
        raise click.ClickException(str(error)) from error
    processor = build_processor(
        binding, clients=clients, runtime_environment=environment, log=error_file
    )
    serve(processor, input_file, output_file, error_file)


@kcl.command("properties")
@click.argument("function")
@_STACK_OPTION
def properties(function: str, stack_name: str | None) -> None:
    """Print FUNCTION's deploy/kcl properties with the stack's stream and region."""
    try:
        binding, _, _, name = bind(function, stack_name)
    except StackError as error:
        raise click.ClickException(str(error)) from error
    sys.stdout.write(render_properties(binding, name))


@kcl.command("list")
def list_consumers() -> None:
    """The template's Kinesis consumers, their streams and properties files."""
    settings = LocalSettings()
    for function, stream in sorted(kinesis_consumers(load_template(settings.template)).items()):
        click.echo(f"{function:<28} {stream:<18} {properties_file(function)}")
