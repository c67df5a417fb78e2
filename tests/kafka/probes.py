"""A test-only template function for the Kafka worker: fails on poison, logs the rest."""

from __future__ import annotations

import base64
import os
from typing import Any

from tests.local.probes import kinesis_probe


def poison_probe(**mapping: Any) -> Any:
    """The readings-stream probe of the local tests, with :func:`poison_handler`."""
    base = kinesis_probe(**mapping)

    def extend(template: dict[str, Any]) -> None:
        base(template)
        properties = template["Resources"]["ProbeFunction"]["Properties"]
        properties["Handler"] = "tests.kafka.probes.poison_handler"

    return extend


def poison_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Raises when the batch holds a poison record; else appends each record to PROBE_OUT."""
    records = event["Records"]
    datas = [base64.b64decode(r["kinesis"]["data"]) for r in records]
    if any(d.startswith(b"poison") for d in datas):
        raise ValueError("poison record in the batch")
    with open(os.environ["PROBE_OUT"], "ab") as out:
        for record, data in zip(records, datas, strict=True):
            out.write(record["kinesis"]["partitionKey"].encode() + b" " + data + b"\n")
    return {"batchItemFailures": []}
