"""Which template functions have a KCL consumer, and how one is bound to a deployed stack.

A consumer is a template function with a Kinesis event: its handler, environment,
batch size, retry bounds and on-failure destination all come from the deployed stack, so
a KCL worker runs the function exactly as Lambda would run it, with nothing configured
twice. Two sources, one shape (:class:`Binding`, made of the template model's
:class:`~wattstream.hosting.template.FunctionSpec` and
:class:`~wattstream.hosting.template.MappingSpec`):

* the local stack's description (``wattstream stack up`` writes it), for local runs;
* a CloudFormation stack on AWS (or any endpoint ``AWS_ENDPOINT_URL`` names): the function's
  configuration (``GetFunctionConfiguration``: its resolved environment) and its Kinesis
  event source mapping (``ListEventSourceMappings``: the same properties as the template).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from wattstream.hosting.lambda_model import Function, Handler, resolve_handler
from wattstream.hosting.template import (
    FunctionSpec,
    MappingSpec,
    StackDescription,
    StackError,
    handler_of,
)

#: Mapping properties a KCL consumer honours, with the names CloudFormation and the
#: Lambda API share.
MAPPING_PROPERTIES = (
    "EventSourceArn",
    "BatchSize",
    "StartingPosition",
    "FunctionResponseTypes",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "DestinationConfig",
    "ParallelizationFactor",
)


@dataclass(frozen=True)
class Binding:
    """One consumer, resolved: the function to invoke and the stream mapping it replaces."""

    function: FunctionSpec
    mapping: MappingSpec

    @property
    def stream_arn(self) -> str:
        return self.mapping.source_arn

    @property
    def stream_name(self) -> str:
        return self.stream_arn.rsplit("/", 1)[1]

    @property
    def region(self) -> str:
        return self.stream_arn.split(":")[3]

    @property
    def destination_arn(self) -> str | None:
        destination = self.mapping.properties.get("DestinationConfig", {}).get("OnFailure", {})
        arn = destination.get("Destination")
        return str(arn) if arn else None

    def function_runner(
        self,
        *,
        handler: Handler | None = None,
        runtime_environment: Mapping[str, str] | None = None,
        log: TextIO | None = None,
    ) -> Function:
        """The function bound to its template handler (``handler`` overrides it, for tests)."""
        from wattstream.settings import PACKAGE_ROOT

        return Function(
            self.function,
            handler or resolve_handler(self.function, PACKAGE_ROOT / "deploy"),
            runtime_environment={
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                **(runtime_environment or {}),
            },
            log=log,
        )


def kinesis_consumers(template: Mapping[str, Any]) -> dict[str, str]:
    """Function logical id -> the logical id of the stream it reads, for every Kinesis event.

    A function with several Kinesis events would need one KCL application per stream;
    the template has none, and this refuses one rather than guess.
    """
    consumers: dict[str, str] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        events = resource.get("Properties", {}).get("Events", {}) or {}
        streams = [
            _logical_target(event["Properties"]["Stream"])
            for event in events.values()
            if event.get("Type") == "Kinesis"
        ]
        if len(streams) > 1:
            raise StackError(f"{logical_id} reads {len(streams)} streams: one KCL app each")
        if streams:
            consumers[logical_id] = streams[0]
    return consumers


def _logical_target(value: Any) -> str:
    """``!GetAtt X.Arn`` or ``!Ref X`` -> ``X``."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else target.split(".")[0])
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    raise StackError(f"a stream given as {value!r}: use !GetAtt Stream.Arn")


def from_local_stack(description: StackDescription, function_logical_id: str) -> Binding:
    """The consumer of a function of the local stack (its mapping resolved by moto)."""
    if function_logical_id not in description.functions:
        raise StackError(
            f"{function_logical_id} is not a function of stack {description.stack_name}; "
            f"known: {sorted(description.functions)}"
        )
    mappings = [
        m
        for m in description.mappings
        if m.function_logical_id == function_logical_id and m.source_kind == "kinesis"
    ]
    if len(mappings) != 1:
        raise StackError(f"{function_logical_id} has {len(mappings)} Kinesis mappings, not 1")
    return Binding(description.functions[function_logical_id], mappings[0])


def from_cloudformation(
    stack_name: str, function_logical_id: str, clients: Callable[[str], Any]
) -> Binding:
    """The consumer of a function of a deployed CloudFormation stack."""
    cloudformation, lambda_ = clients("cloudformation"), clients("lambda")
    pages = cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name)
    physical = [
        summary["PhysicalResourceId"]
        for page in pages
        for summary in page["StackResourceSummaries"]
        if summary["LogicalResourceId"] == function_logical_id
    ]
    if not physical:
        raise StackError(f"{function_logical_id} is not a resource of stack {stack_name}")
    config = lambda_.get_function_configuration(FunctionName=physical[0])
    pages = lambda_.get_paginator("list_event_source_mappings").paginate(
        FunctionName=config["FunctionArn"]
    )
    kinesis = [
        m
        for page in pages
        for m in page["EventSourceMappings"]
        if m.get("EventSourceArn", "").split(":")[2:3] == ["kinesis"]
    ]
    if len(kinesis) != 1:
        raise StackError(f"{function_logical_id} has {len(kinesis)} Kinesis mappings, not 1")
    properties = {k: kinesis[0][k] for k in MAPPING_PROPERTIES if k in kinesis[0]}
    function = FunctionSpec(
        logical_id=function_logical_id,
        name=config["FunctionName"],
        arn=config["FunctionArn"],
        handler=handler_of(config),
        code_uri=".",
        timeout_s=int(config.get("Timeout") or 3),
        memory_mb=int(config.get("MemorySize") or 128),
        environment=dict(config.get("Environment", {}).get("Variables", {})),
    )
    return Binding(function, MappingSpec(str(kinesis[0]["UUID"]), function_logical_id, properties))
