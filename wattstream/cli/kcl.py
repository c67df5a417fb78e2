"""``wattstream kcl``: the KCL consumers' commands (also ``python -m wattstream.kcl``).

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
    logging.basicConfig(stream=error_file, level=logging.INFO)
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
    sys.stdout.write(render_properties(binding, name))


@kcl.command("list")
def list_consumers() -> None:
    """The template's Kinesis consumers, their streams and properties files."""
    settings = LocalSettings()
    for function, stream in sorted(kinesis_consumers(load_template(settings.template)).items()):
        click.echo(f"{function:<28} {stream:<18} {properties_file(function)}")
