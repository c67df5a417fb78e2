"""Test-only functions added to the real template, so the runner can be exercised."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def kinesis_probe(logical_id: str = "ProbeFunction", **mapping: Any) -> Any:
    """Extend a template with a function reading the readings stream."""
    properties = {
        "Stream": {"Fn::GetAtt": ["ReadingsStream", "Arn"]},
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": 10,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "DestinationConfig": {
            "OnFailure": {"Destination": {"Fn::GetAtt": ["ReadingsFailureQueue", "Arn"]}}
        },
    }
    properties.update(mapping)

    def extend(template: dict[str, Any]) -> None:
        template["Resources"][logical_id] = {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "Runtime": "python3.12",  # zip functions name their runtime (no Globals)
                "CodeUri": "..",
                "Handler": "tests.local.probes.echo_handler",
                "Environment": {"Variables": {"PROBE_STREAM": {"Ref": "ReadingsStream"}}},
                "Events": {"Readings": {"Type": "Kinesis", "Properties": properties}},
            },
        }

    return extend


def sqs_probe(logical_id: str = "RawProbeFunction", **mapping: Any) -> Any:
    """Extend a template with a function fed by the raw bucket's S3 events (via SQS)."""
    properties = {
        "Queue": {"Fn::GetAtt": ["RawEventsQueue", "Arn"]},
        "BatchSize": 10,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
    }
    properties.update(mapping)

    def extend(template: dict[str, Any]) -> None:
        template["Resources"][logical_id] = {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "Runtime": "python3.12",  # zip functions name their runtime (no Globals)
                "CodeUri": "..",
                "Handler": "tests.local.probes.echo_handler",
                "Events": {"RawEvents": {"Type": "SQS", "Properties": properties}},
            },
        }

    return extend


#: What echo_handler saw of its environment, one entry per invocation.
SEEN_STREAMS: list[tuple[str, str]] = []


class EchoEntry:
    """A shell entry imported by name from the template, as on Lambda: ``bind`` gets the
    function's own environment (never ``os.environ``)."""

    def bind(self, environment: Mapping[str, str]) -> Callable[[dict[str, Any], Any], Any]:
        seen = (
            environment.get("PROBE_STREAM", "<unset>"),
            environment.get("AWS_ENDPOINT_URL", "<unset>"),
        )

        def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
            SEEN_STREAMS.append(seen)
            print(f"echo {len(event['Records'])} records")  # lands in the function's log file
            return {"batchItemFailures": []}

        return handle

    def reset(self) -> None:
        """Nothing cached."""


echo_handler = EchoEntry()
