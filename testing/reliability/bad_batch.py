"""Bad-batch latency: how long ``POST /readings`` takes to refuse a body of bad items.

Why: the cost of a bad item must be bounded (issue 13). A 1 MiB body of 10,000 invalid
readings used to write 10,000 S3 objects and take minutes; the quarantine now stores one
object per request and sends one pointer message, so the answer must come back in well
under API Gateway's 29 s (the goal is 2 s on the local stack). Also measured: a body over
the HTTP limit, refused by size (413) before it is parsed.

The ingest HTTP app runs in this process (FastAPI's test client) with the real adapters
(Kinesis publisher, S3 + SQS quarantine) on a provisioned local stack, as in
:func:`testing.reliability.scenarios.hostile_http`. Reuse :func:`bad_batch_latency`
from a benchmark or a test; its figures are wall-clock seconds of whole requests.

Example (with a stack and a client factory, as ``bench/reliability.py`` has them)::

    figures = bad_batch_latency(stack, clients, repeats=5)
    figures["bad_batch_p99_s"]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from wattstream.hosting.template import StackDescription

__all__ = ["BAD_KINDS", "bad_batch_body", "bad_batch_latency"]

Clients = Callable[[str], Any]

_BASE: Final = {
    "household_id": "bad-0000",
    "timestamp": "2024-01-01T00:00:00Z",
    "global_active_power_kw": 1.0,
}

BAD_KINDS: Final[tuple[tuple[str, dict[str, Any]], ...]] = (
    ("negative_power", {"global_active_power_kw": -1.0}),
    ("implausible_voltage", {"voltage_v": 0.0}),
    ("implausible_timestamp", {"timestamp": "1900-01-01T00:00:00Z"}),
    ("implausible_power", {"global_reactive_power_kw": 1e308}),
    ("implausible_current", {"global_intensity_a": 1e308}),
    ("bad_interval", {"energy_kwh": 1e306, "interval_s": 1e308}),
    ("bad_timestamp", {"timestamp": 1796643060000}),
    ("bad_household_id", {"household_id": "victim/../attacker"}),
    ("unknown_field", {"watts": 1}),
    ("naive_timestamp", {"timestamp": "2024-01-01T00:00:00"}),
)
"""Each kind of bad item in the body: the code it must get, and how it breaks the base."""


def bad_batch_body(items: int = 10_000, *, target_bytes: int = 1024 * 1024, seed: int = 1) -> bytes:
    """A JSON list of ``items`` distinct invalid readings, padded to about ``target_bytes``.

    Every item breaks exactly one rule (cycling through :data:`BAD_KINDS`, each on its
    own minute); unknown-field items carry the padding, so the body is ``target_bytes``
    within a few bytes when that is more than the items need.
    """
    body: list[dict[str, Any]] = []
    for n in range(items):
        _, change = BAD_KINDS[n % len(BAD_KINDS)]
        stamp = f"2024-01-{1 + n // 1440 % 28:02d}T{n // 60 % 24:02d}:{n % 60:02d}:00Z"
        household = f"b{seed % 10_000}"  # another seed, other items (other keys)
        body.append({**_BASE, "household_id": household, "timestamp": stamp, **change})
    text = json.dumps(body, separators=(",", ":"))
    padded = [i for i, item in enumerate(body) if "watts" in item]
    missing = target_bytes - len(text)
    if missing > 0 and padded:
        # each pad adds len(',"pad":""') = 9 bytes plus its text
        per_item, extra = divmod(missing - 9 * len(padded), len(padded))
        for rank, i in enumerate(padded):
            body[i]["pad"] = "x" * max(0, per_item + (rank < extra))
        text = json.dumps(body, separators=(",", ":"))
    return text.encode()


def bad_batch_latency(
    stack: StackDescription,
    clients: Clients,
    *,
    repeats: int = 5,
    items: int = 10_000,
    target_bytes: int = 1024 * 1024,
    oversize_bytes: int = 10 * 1024 * 1024,
    seed: int = 1,
) -> dict[str, Any]:
    """POST the bad batch ``repeats`` times (and one oversize body); seconds and counts.

    Returns ``bad_batch_p99_s`` (the issue's field), the median (wall clock, and CPU of
    this process, which includes an in-process moto server: on a loaded machine the CPU
    figure says what the request costs), the answer's status and
    totals, the quarantine objects and queue messages one request made, and the
    oversize body's status and seconds.
    """
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.metrics import EphemeralMetrics
    from fastapi.testclient import TestClient

    from services.ingest.adapters.quarantine import S3SqsQuarantine
    from services.ingest.shells.http_app import IngestHttpDeps, create_app
    from shared.quarantine import message_items
    from shared.streams.kinesis import KinesisPublisher
    from testing.reliability.scenarios import queue_url, take_messages

    s3, sqs = clients("s3"), clients("sqs")
    bucket = stack.outputs["ArchiveBucketName"]
    quarantine_url = queue_url(stack, clients, "QuarantineQueueUrl")
    deps = IngestHttpDeps(
        publisher=KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis")),
        quarantine=S3SqsQuarantine(bucket, quarantine_url, s3=s3, sqs=sqs),
        logger=Logger(service="ingest-http"),
        metrics=EphemeralMetrics(namespace="wattstream-reliability", service="ingest-http"),
    )
    client = TestClient(create_app(deps), raise_server_exceptions=False)
    headers = {"Content-Type": "application/json"}
    take_messages(sqs, quarantine_url)

    def objects() -> int:
        listing = s3.list_objects_v2(Bucket=bucket, Prefix="quarantine/")
        return int(listing.get("KeyCount", 0))

    seconds: list[float] = []
    cpu_seconds: list[float] = []  # this process's CPU (app + in-process moto server)
    statuses: set[int] = set()
    messages = quarantined = 0
    answer: dict[str, Any] = {}
    before = objects()
    for attempt in range(repeats):
        body = bad_batch_body(items, target_bytes=target_bytes, seed=seed + attempt)
        started, cpu = time.perf_counter(), time.process_time()
        reply = client.post("/readings", content=body, headers=headers)
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu)
        statuses.add(reply.status_code)
        answer = reply.json()
        bodies = take_messages(sqs, quarantine_url)
        messages += len(bodies)
        quarantined += sum(map(message_items, bodies))
    objects_per_request = (objects() - before) / max(repeats, 1)

    oversize = b"[" + b" " * oversize_bytes + b"]"
    started = time.perf_counter()
    big = client.post("/readings", content=oversize, headers=headers)
    oversize_s = time.perf_counter() - started
    take_messages(sqs, quarantine_url)
    totals = answer.get("totals", {})
    return {
        "bad_batch_p99_s": float(np.percentile(seconds, 99)),
        "bad_batch_median_s": float(np.median(seconds)),
        "bad_batch_median_cpu_s": float(np.median(cpu_seconds)),
        "bad_batch_requests": repeats,
        "bad_batch_items": items,
        "bad_batch_body_bytes": len(body),
        "bad_batch_status": sorted(statuses),
        "bad_batch_rejected": totals.get("rejected"),
        "bad_batch_rejected_by_code": totals.get("rejected_by_code"),
        "bad_batch_quarantined_items": quarantined,
        "bad_batch_objects_per_request": objects_per_request,
        "bad_batch_messages_per_request": messages / max(repeats, 1),
        "oversize_status": big.status_code,
        "oversize_s": oversize_s,
        "oversize_body_bytes": len(oversize),
    }
