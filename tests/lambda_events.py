"""Checked-in Lambda Kinesis events (``tests/events/``), rebuilt from their payloads.

Each handler's fixture test asserts that its checked-in event equals what this builds
from the codec, so the JSON files cannot drift from the wire format.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parent / "events"
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/readings"
SHARD = "shardId-000000000000"


def kinesis_fixture_event(payloads: Sequence[tuple[str, bytes]], *, role: str) -> dict[str, Any]:
    """What Lambda delivers for these (partition key, data) records on one shard."""
    records = []
    for i, (key, data) in enumerate(payloads):
        sequence = f"4959033827149025660855969253836157109592157598913658{8802 + i * 2:04d}"
        records.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": key,
                    "sequenceNumber": sequence,
                    "data": base64.b64encode(data).decode("ascii"),
                    "approximateArrivalTimestamp": 1_700_000_000.125 + i,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{SHARD}:{sequence}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": f"arn:aws:iam::123456789012:role/{role}",
                "awsRegion": "us-east-1",
                "eventSourceARN": STREAM_ARN,
            }
        )
    return {"Records": records}


def load_fixture_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text())


def sequences(event: dict[str, Any]) -> list[str]:
    return [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
