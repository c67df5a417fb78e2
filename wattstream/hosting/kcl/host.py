"""The process the MultiLangDaemon starts for a shard: bind, build, speak the protocol.

``wattstream kcl run ArchiveFunction --stack-name S`` (the ``executableName`` of
``deploy/kcl/archive.properties``) binds the consumer to the deployed stack, imports the
function's ``Handler`` (whose module-level ``handler`` builds its dependencies from the
environment on first use: the function's own composition root), and runs amazon_kclpy's
``KCLProcess`` with :class:`~wattstream.hosting.kcl.processor.LambdaShardProcessor` until the
daemon closes stdin.

stdout belongs to the protocol: the daemon reads JSON lines from it. Handlers print
(Powertools logs and EMF metrics go to stdout on Lambda), so before anything else the
real stdout is kept for the protocol and file descriptor 1 is pointed at stderr, which the
daemon copies to its own log.
"""

from __future__ import annotations

import os
import re
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from wattstream.hosting.kcl.binding import Binding
from wattstream.hosting.lambda_model import Handler
from wattstream.hosting.settler import MappingPolicy, SqsDestination, queue_url
from wattstream.settings import PACKAGE_ROOT

#: ``deploy/kcl/<consumer>.properties``, one per Kinesis consumer of the template.
PROPERTIES_DIR = PACKAGE_ROOT / "deploy" / "kcl"


def properties_file(function_logical_id: str) -> Path:
    """``GatewayReadingsFunction`` -> ``deploy/kcl/gateway-readings.properties``."""
    name = function_logical_id.removesuffix("Function")
    kebab = "".join(f"-{c.lower()}" if c.isupper() else c for c in name).lstrip("-")
    return PROPERTIES_DIR / f"{kebab}.properties"


def render_properties(
    binding: Binding,
    stack_name: str,
    text: str | None = None,
    *,
    local_endpoints: tuple[str, str] | None = None,
) -> str:
    """A consumer's properties with the stack's values filled in (``${name}`` placeholders).

    The daemon does not expand variables, so the file is rendered before it starts:
    ``${stackName}``, ``${streamArn}``, ``${streamName}`` and ``${regionName}``. A missing or
    unknown placeholder is an error, not an empty value.

    ``local_endpoints`` (Kinesis, DynamoDB: the local stack's emulator) adds the endpoint
    overrides, turns CloudWatch metrics off and lets the record processor bind to the
    local stack (no ``--stack-name``); without it the file is the AWS one, unchanged.
    """
    source = properties_file(binding.function.logical_id)
    template = string.Template(source.read_text() if text is None else text)
    rendered = template.substitute(
        stackName=stack_name,
        streamArn=binding.stream_arn,
        streamName=binding.stream_name,
        regionName=binding.region,
    )
    if local_endpoints is None:
        return rendered
    kinesis, dynamodb = local_endpoints
    lines = [
        re.sub(r" --stack-name \S+$", "", line) if line.startswith("executableName") else line
        for line in rendered.splitlines()
    ]
    return "\n".join([
        *lines,
        "",
        "# The local stack (not on AWS): its emulator's endpoints, no CloudWatch metrics.",
        "# The daemon's Kinesis client speaks HTTP/2 only and moto HTTP/1.1: `wattstream kcl",
        "# daemon` puts an HTTP/2 front before moto and names it as kinesisEndpoint.",
        f"kinesisEndpoint = {kinesis}",
        f"dynamoDBEndpoint = {dynamodb}",
        "metricsLevel = NONE",
        "",
    ])  # fmt: skip


def protocol_streams() -> tuple[TextIO, TextIO, TextIO]:
    """(input, output, error) for the protocol, with fd 1 sent to stderr from now on."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return sys.stdin, protocol, sys.stderr


def build_processor(
    binding: Binding,
    *,
    clients: Callable[[str], Any],
    handler: Handler | None = None,
    runtime_environment: dict[str, str] | None = None,
    log: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> Any:
    """The record processor of one consumer (``handler`` overrides the template's, for tests)."""
    from wattstream.hosting.kcl.processor import LambdaShardProcessor

    function = binding.function_runner(
        handler=handler, runtime_environment=runtime_environment, log=log
    )
    destination = None
    if binding.destination_arn:
        sqs = clients("sqs")
        destination = SqsDestination(sqs, queue_url(sqs, binding.destination_arn))
    return LambdaShardProcessor(
        function,
        stream_arn=binding.stream_arn,
        policy=MappingPolicy.of(binding.mapping),
        destination=destination,
        sleep=sleep,
        clock=clock,
    )


def serve(processor: Any, input_file: TextIO, output_file: TextIO, error_file: TextIO) -> None:
    """Speak the MultiLangDaemon protocol until the daemon closes ``input_file``."""
    from amazon_kclpy import kcl

    kcl.KCLProcess(
        processor, input_file=input_file, output_file=output_file, error_file=error_file
    ).run()
