"""The reliability scenarios, each on a deployed (local) stack, each returning its figures.

A scenario injects one kind of fault into the real pipeline (real handlers, real adapters,
moto) and measures the outcome in the stack's outputs: ``lost`` readings (expected but
not archived), ``duplicated`` rows or forecasts, items quarantined. The tests assert on
these figures; ``python -m bench reliability`` prints them. Loads are small by default.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import random
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics

from services.ingest.adapters.quarantine import S3SqsQuarantine
from services.ingest.shells.batch_lambda import BatchDeps
from services.ingest.shells.batch_lambda import handler as batch_entry
from shared.batch import ReadingBatch
from shared.publishing import stream_records
from shared.quarantine import message_items
from shared.retry import RetryPolicy
from shared.streams.kinesis import KinesisPublisher
from shared.streams.ports import StreamRecord
from shared.uci import UCI_CLOCK, UTC_OFFSET_METADATA, iter_uci
from testing.entries import reset_lambda_entries
from testing.reliability.faults import ThrottlingKinesis
from testing.reliability.observe import emf_metrics_in, read_archive
from testing.reliability.runtimes import (
    ConsumerRuntime,
    FaustRuntime,
    KclRuntime,
    RunnerRuntime,
    run_with_kills,
)
from wattstream.hosting.template import StackDescription
from wattstream.local.runner import EventSourceRunner
from wattstream.settings import default_data_slice

Clients = Callable[[str], Any]

#: The uploads of real UCI data declare the file's clock, as ``wattstream upload`` does.
UCI_UPLOAD_METADATA = {UTC_OFFSET_METADATA: UCI_CLOCK}


@dataclass
class ScenarioResult:
    """One row of the reliability table (``extra`` holds scenario-specific figures)."""

    scenario: str
    load: int
    faults_injected: int
    lost: int
    duplicated: int
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "load": self.load,
            "faults_injected": self.faults_injected,
            "lost": self.lost,
            "duplicated": self.duplicated,
            **self.extra,
        }


# --------------------------------------------------------------------------- real data


def uci_text(days: int) -> bytes:
    """The header and the first ``days`` x 1,440 lines of the shipped UCI slice, as bytes."""
    with gzip.open(default_data_slice(), "rb") as source:
        return b"".join(itertools.islice(source, 1 + days * 1440))


def real_readings(households: int, days: int) -> list[ReadingBatch]:
    """The first ``days`` of the shipped UCI slice, once per household (``rel-NNNN``)."""
    series = ReadingBatch.concat([c.readings for c in iter_uci(io.BytesIO(uci_text(days)))])
    return [
        ReadingBatch(f"rel-{h:04d}", series.timestamps_us, series.columns)
        for h in range(1, households + 1)
    ]


def expected_timestamps(batches: list[ReadingBatch]) -> dict[str, np.ndarray]:
    return {b.household_id: b.timestamps_us for b in batches}


def queue_url(stack: StackDescription, clients: Clients, output: str) -> str:
    name = stack.outputs[output].rsplit("/", 1)[1]
    return str(clients("sqs").get_queue_url(QueueName=name)["QueueUrl"])


def in_process_runner(
    stack: StackDescription,
    clients: Clients,
    workdir: Path,
    functions: set[str],
    handlers: dict[str, Any] | None = None,
) -> EventSourceRunner:
    """The template's functions in this process (the runner's own semantics, no kills).

    Scenarios run several stacks in one process: the runner resolves each handler afresh
    (:func:`wattstream.hosting.lambda_model.resolve_handler`), so it builds its dependencies from
    *this* stack's environment.
    """
    reset_lambda_entries()
    return EventSourceRunner(
        stack,
        clients=clients,
        checkpoint_path=workdir / "checkpoints.json",
        handlers=handlers,
        functions=functions,
        idle_sleep_s=0.01,
        max_backoff_s=0.05,
        log_dir=workdir / "logs",
    )


# --------------------------------------------------------------------------- throttling


def throttling(
    stack: StackDescription,
    clients: Clients,
    workdir: Path,
    *,
    households: int = 2,
    days: int = 3,
    fraction: float = 0.3,
    seed: int = 1,
    readings_per_record: int = 60,
    policy: RetryPolicy | None = None,
) -> ScenarioResult:
    """Uploads -> batch ingest (30 % of PutRecords entries throttled) -> archive.

    The throttling is injected under the real KinesisPublisher, through its client; the
    upload's S3 event reaches the batch handler on the local runner, the archive consumer
    reads the stream. Lost = readings uploaded but not archived.
    """
    policy = policy or RetryPolicy()
    s3 = clients("s3")
    batches = real_readings(households, days)
    raw = stack.outputs["RawBucketName"]
    text = uci_text(days)
    for batch in batches:
        s3.put_object(
            Bucket=raw,
            Key=f"uploads/{batch.household_id}/readings.txt",
            Body=text,
            Metadata=UCI_UPLOAD_METADATA,
        )
    injector = ThrottlingKinesis(clients("kinesis"), fraction=fraction, seed=seed)
    metrics = EphemeralMetrics(namespace="wattstream-reliability", service="ingest-batch")
    deps = BatchDeps(
        s3=s3,
        raw_bucket=raw,
        publisher=KinesisPublisher(
            stack.outputs["ReadingsStreamName"],
            injector,
            retry=policy,
            sleep=lambda s: None,  # the backoff is the policy's; waiting adds nothing here
            rng=random.Random(seed),
        ),
        quarantine=S3SqsQuarantine(
            stack.outputs["ArchiveBucketName"],
            queue_url(stack, clients, "QuarantineQueueUrl"),
            s3=s3,
            sqs=clients("sqs"),
        ),
        readings_per_record=readings_per_record,
        logger=Logger(service="ingest-batch"),
        metrics=metrics,
    )
    runner = in_process_runner(
        stack,
        clients,
        workdir,
        {"IngestBatchFunction", "ArchiveFunction"},
        {"IngestBatchFunction": batch_entry.build(deps)},
    )
    runner.drain(timeout_s=300)
    archive = read_archive(s3, stack.outputs["ArchiveBucketName"])
    expected = expected_timestamps(batches)
    emf = emf_metrics_in(workdir / "logs" / "IngestBatchFunction.log")
    return ScenarioResult(
        "throttling",
        load=sum(len(b) for b in batches),
        faults_injected=injector.throttled,
        lost=archive.missing(expected),
        duplicated=archive.duplicated(),
        extra={
            "put_records_requests": injector.requests,
            "entries_sent": injector.entries,
            "metric_publish_requests": emf["PublishRequests"],
            "metric_retried_entries": emf["PublishRetriedEntries"],
            "metric_throttled_entries": emf["PublishThrottledEntries"],
            "max_attempts": policy.max_attempts,
            "uploads_failed": emf["UploadsFailed"],
            "max_sends_per_entry": injector.max_sends_per_entry,
        },
    )


# --------------------------------------------------------------------------- crash


def publish(
    stack: StackDescription, clients: Clients, batches: list[ReadingBatch], per_record: int
) -> int:
    """Publish readings on the readings stream (the producer is not under test here)."""
    records = stream_records(batches, readings_per_record=per_record)
    KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis")).publish(records)
    return len(records)


def forecast_documents(
    clients: Clients, stack: StackDescription
) -> dict[tuple[str, str], Counter[bytes]]:
    """Forecasts on the stream by identity (household, issued at): documents -> copies."""
    from testing.reliability.observe import read_stream

    found: dict[tuple[str, str], Counter[bytes]] = {}
    for _, data in read_stream(clients("kinesis"), stack.outputs["ForecastsStreamName"]):
        document = json.loads(data)
        identity = (document["household_id"], document["issued_at"])
        found.setdefault(identity, Counter())[data] += 1
    return found


def crash(
    stack: StackDescription,
    clients: Clients,
    workdir: Path,
    *,
    runtime: str,
    households: int = 2,
    days: int = 3,
    kills: int = 2,
    seed: int = 1,
    readings_per_record: int | None = None,
    clean_stack: StackDescription | None = None,
    bootstrap: str | None = None,
) -> ScenarioResult:
    """kill -9 the consumer mid-stream ``kills`` times, restart it, judge the outputs.

    ``runtime`` is ``runner``, ``kcl`` (readings on the Kinesis stream) or ``faust``
    (readings on the Kafka topic of the same name, on ``bootstrap`` or, without one, on
    a tansu broker started for the scenario). Records hold ``readings_per_record``
    readings: 20 by default, 5 for faust, whose worker takes the mapping's full batches
    of 100 off a live topic: smaller records make the stream last long enough to kill
    the worker mid-stream twice.

    The archive must hold every reading exactly once. With ``clean_stack`` (runner only)
    the realtime consumer is killed too, and its forecasts are compared with those of an
    uninterrupted run of the same records there (the baseline in the same run): none may
    be missing, and no forecast identity may carry two different documents (republished
    byte-identical copies are what at-least-once delivery makes; the gateway upserts them).
    """
    if runtime not in ("runner", "kcl", "faust") or (clean_stack and runtime != "runner"):
        raise ValueError(
            f"no crash scenario for runtime {runtime!r} (forecasts: {bool(clean_stack)})"
        )
    if runtime == "faust" and bootstrap is None:
        from wattstream.local.apache_kafka import (
            BROKER_ENV,
            KafkaUnavailable,
            kafka_libs,
            local_broker,
        )

        # Apache Kafka (what users run) unless WATTSTREAM_KAFKA_BROKER says otherwise;
        # tansu where Java or the jars are missing, said on stderr, never silently.
        kind = os.environ.get(BROKER_ENV, "apache-kafka")
        if kind == "apache-kafka":
            try:
                kafka_libs()
            except KafkaUnavailable as error:
                print(f"crash drill on tansu: {error}", file=sys.stderr)
                kind = "tansu"
        workdir.mkdir(parents=True, exist_ok=True)
        with local_broker(kind, workdir / f"{kind}.log", work_dir=workdir / kind) as broker:
            return crash(
                stack,
                clients,
                workdir,
                runtime=runtime,
                households=households,
                days=days,
                kills=kills,
                seed=seed,
                readings_per_record=readings_per_record,
                bootstrap=broker.bootstrap,
            )
    if readings_per_record is None:
        readings_per_record = 5 if runtime == "faust" else 20
    batches = real_readings(households, days)
    consumer: ConsumerRuntime
    if runtime == "faust":
        sent = stream_records(batches, readings_per_record=readings_per_record)
        records = len(sent)  # published by the runtime, as the worker consumes them
        consumer = FaustRuntime(stack, workdir, "ArchiveFunction", str(bootstrap), sent)
    else:
        records = publish(stack, clients, batches, readings_per_record)
    kinesis = clients("kinesis")
    if runtime == "runner":
        functions = ["ArchiveFunction"] + (["RealtimeFunction"] if clean_stack else [])
        consumer = RunnerRuntime(stack, kinesis, workdir, functions)
    elif runtime == "kcl":
        # small batches: several checkpoints per shard, so the kills land mid-stream
        consumer = KclRuntime(stack, kinesis, workdir, "ArchiveFunction", batch_size=20)
    rng = random.Random(seed)
    killed = run_with_kills(
        consumer,
        kills=kills,
        kill_at=[rng.uniform(0.1, 0.8) for _ in range(kills)],
        # the Java daemon: ~1 min to start, then a dead worker's leases expire first
        timeout_s=1200.0 if runtime == "kcl" else 300.0,
    )
    archive = read_archive(clients("s3"), stack.outputs["ArchiveBucketName"])
    extra: dict[str, Any] = {"records": records, "starts": consumer.starts}
    duplicated = archive.duplicated()
    if clean_stack is not None:
        publish(clean_stack, clients, batches, readings_per_record)
        in_process_runner(clean_stack, clients, workdir / "clean", {"RealtimeFunction"}).drain(
            timeout_s=300
        )
        clean = forecast_documents(clients, clean_stack)
        faulty = forecast_documents(clients, stack)
        conflicting = sum(1 for copies in faulty.values() if len(copies) > 1)
        changed = sum(
            1 for k, copies in faulty.items() if k in clean and set(copies) != set(clean[k])
        )
        extra.update(
            forecasts=len(clean),
            forecasts_missing=len(clean.keys() - faulty.keys()),
            forecasts_unexpected=len(faulty.keys() - clean.keys()),
            forecasts_conflicting=conflicting + changed,
            forecast_copies_republished=sum(sum(c.values()) - 1 for c in faulty.values()),
        )
        duplicated += conflicting + changed + extra["forecasts_unexpected"]
    return ScenarioResult(
        f"crash-{runtime}",
        load=sum(len(b) for b in batches),
        faults_injected=killed,
        lost=archive.missing(expected_timestamps(batches)) + extra.get("forecasts_missing", 0),
        duplicated=duplicated,
        extra=extra,
    )


# --------------------------------------------------------------------------- hostile input


def take_messages(sqs: Any, url: str) -> list[str]:
    """Receive and delete every waiting message (an operator's consumer of the queue).

    Draining as the scenario goes keeps the queue short: moto's SendMessage costs grow
    with the queue's length, which would make a 10,000-item run quadratic.
    """
    bodies: list[str] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        bodies += [m["Body"] for m in messages]
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )


class QueueDrain:
    """Takes a queue's messages in a background thread while a scenario runs (counting them).

    The stand-in for the operators' consumer of the quarantine queue: without one, moto's
    SendMessage slows down with the queue's length and a 10,000-item run turns quadratic.
    """

    def __init__(self, sqs: Any, url: str, *, every_s: float = 0.2) -> None:
        self._sqs, self._url, self._every_s = sqs, url, every_s
        self.bodies: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-drain", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self.bodies += take_messages(self._sqs, self._url)

    def __enter__(self) -> QueueDrain:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(60)
        self.bodies += take_messages(self._sqs, self._url)


def _reading_json(batch: ReadingBatch) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json", exclude_none=True) for r in batch.to_readings()]


def hostile_http(
    stack: StackDescription,
    clients: Clients,
    workdir: Path,
    *,
    items: int = 1000,
    bodies: int = 30,
    per_payload: int = 250,
    households: int = 2,
    days: int = 1,
    seed: int = 1,
) -> ScenarioResult:
    """Hostile items and bodies mixed into valid readings, POSTed to the ingest HTTP app.

    Every hostile item must come back ``rejected`` with a code and reason and be
    quarantined (counted from the queue's pointer messages); every hostile body must be
    refused as a whole and quarantined; every valid reading must reach the archive.
    """
    from fastapi.testclient import TestClient

    from services.ingest.shells.http_app import IngestHttpDeps, create_app
    from testing.reliability.hostile import generate, hostile_body, hostile_item

    s3, sqs = clients("s3"), clients("sqs")
    quarantine_url = queue_url(stack, clients, "QuarantineQueueUrl")
    deps = IngestHttpDeps(
        publisher=KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis")),
        quarantine=S3SqsQuarantine(
            stack.outputs["ArchiveBucketName"], quarantine_url, s3=s3, sqs=sqs
        ),
        logger=Logger(service="ingest-http"),
        metrics=EphemeralMetrics(namespace="wattstream-reliability", service="ingest-http"),
    )
    client = TestClient(create_app(deps), raise_server_exceptions=False)
    batches = real_readings(households, days)
    valid = [r for b in batches for r in _reading_json(b)]
    base = {k: valid[0][k] for k in ("household_id", "timestamp", "global_active_power_kw")}
    hostile = generate(hostile_item(base), items, seed=seed)
    rng = random.Random(seed)
    payloads: list[tuple[list[Any], int]] = []  # (items, hostile count)
    valid_per_payload = -(-len(valid) // max(1, -(-len(hostile) // per_payload)))
    for start in range(0, max(len(hostile), 1), per_payload):
        hostile_part = hostile[start : start + per_payload]
        good = valid[len(payloads) * valid_per_payload : (len(payloads) + 1) * valid_per_payload]
        mixed = [*hostile_part, *good]
        rng.shuffle(mixed)
        payloads.append((mixed, len(hostile_part)))
    statuses: dict[int, int] = {}
    refused = unexplained = accepted_hostile = 0
    take_messages(sqs, quarantine_url)  # start from an empty queue
    quarantined = 0
    for mixed, bad in payloads:
        reply = client.post(
            "/readings",
            content=json.dumps(mixed, allow_nan=True),
            headers={"Content-Type": "application/json"},
        )
        statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
        quarantined += sum(map(message_items, take_messages(sqs, quarantine_url)))
        if reply.status_code >= 500:
            continue
        answer = reply.json()
        rejected = [o for o in answer["outcomes"] if o["status"] == "rejected"]
        refused += min(bad, len(rejected))
        accepted_hostile += max(0, bad - len(rejected))
        unexplained += sum(1 for o in rejected if not (o.get("code") and o.get("reason")))
    valid_body = json.dumps(valid[:5]).encode()
    body_refused = 0
    for body, content_type in generate(hostile_body(valid_body), bodies, seed=seed):
        reply = client.post("/readings", content=body, headers={"Content-Type": content_type})
        statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
        quarantined += sum(map(message_items, take_messages(sqs, quarantine_url)))
        if 400 <= reply.status_code < 500 and reply.json()["totals"]["accepted"] == 0:
            body_refused += 1
            unexplained += 0 if reply.json()["error"]["reason"] else 1
    runner = in_process_runner(stack, clients, workdir, {"ArchiveFunction"})
    runner.drain(timeout_s=300)
    archive = read_archive(s3, stack.outputs["ArchiveBucketName"])
    units = len(hostile) + bodies
    return ScenarioResult(
        "hostile-http",
        load=len(valid) + units,
        faults_injected=units,
        lost=archive.missing(expected_timestamps(batches)),
        duplicated=archive.duplicated(),
        extra={
            "hostile_items": len(hostile),
            "hostile_bodies": bodies,
            "refused": refused + body_refused,
            "accepted_hostile": accepted_hostile,
            "quarantined_items": quarantined,
            "quarantined_fraction": min(quarantined, refused + body_refused) / units,
            "without_reason": unexplained,
            "server_errors": sum(n for code, n in statuses.items() if code >= 500),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "valid_readings": len(valid),
        },
    )


def bombs(stack: StackDescription, clients: Clients, workdir: Path) -> ScenarioResult:
    """The upload bombs of :mod:`testing.reliability.bombs` through the real batch path.

    Each file is put under ``uploads/`` (declaring the UCI clock, so only the bomb is at
    fault); the S3 events reach the template's batch handler on the local runner. A bomb
    is *refused cleanly* when its report says ``rejected`` with the expected code, the
    quarantine holds exactly one item for it (and the queue one message), its message
    did not fail (no retry, nothing dead-lettered) and nothing reached the stream.
    """
    from testing.reliability.bombs import upload_bombs
    from testing.reliability.observe import read_quarantine, read_stream

    s3 = clients("s3")
    raw = stack.outputs["RawBucketName"]
    cases = upload_bombs()
    for bomb in cases:
        s3.put_object(Bucket=raw, Key=bomb.key, Body=bomb.body, Metadata=UCI_UPLOAD_METADATA)
    runner = in_process_runner(stack, clients, workdir, {"IngestBatchFunction"})
    quarantine_url = queue_url(stack, clients, "QuarantineQueueUrl")
    with QueueDrain(clients("sqs"), quarantine_url) as drain:
        runner.drain(timeout_s=600)
    items = Counter(q.source for q in read_quarantine(s3, stack.outputs["ArchiveBucketName"]))
    messages = Counter(json.loads(body).get("source") for body in drain.bodies)
    dead = take_messages(clients("sqs"), queue_url(stack, clients, "RawEventsDeadLetterQueueUrl"))
    failed = sum(s.partial_failures for s in runner.stats().values())
    published = len(read_stream(clients("kinesis"), stack.outputs["ReadingsStreamName"]))
    outcomes: dict[str, dict[str, Any]] = {}
    for bomb in cases:
        try:
            report = json.loads(
                s3.get_object(Bucket=raw, Key=f"reports/{bomb.key}.json")["Body"].read()
            )
        except s3.exceptions.NoSuchKey:
            report = {}
        source = f"upload:{bomb.key}"
        outcome = {
            "bytes": len(bomb.body),
            "expands_to": bomb.expands_to,
            "status": report.get("status"),
            "code": (report.get("error") or {}).get("code"),
            "expected": bomb.code,
            "quarantined": items[source],
            "quarantine_messages": messages[source],
        }
        outcome["refused_cleanly"] = (
            outcome["status"] == "rejected"
            and outcome["code"] == bomb.code
            and outcome["quarantined"] == 1
            and outcome["quarantine_messages"] == 1
        )
        outcomes[bomb.name] = outcome
    clean = not failed and not dead and not published
    rejected = sum(o["refused_cleanly"] for o in outcomes.values()) if clean else 0
    return ScenarioResult(
        "bombs",
        load=len(cases),
        faults_injected=len(cases),
        lost=0,
        duplicated=0,
        extra={
            "bombs_rejected": rejected,
            "bombs_total": len(cases),
            "failed_messages": failed,
            "dead_lettered": len(dead),
            "readings_published": published,
            "bombs": outcomes,
        },
    )


def bad_batch_latency(
    stack: StackDescription,
    clients: Clients,
    workdir: Path,
    *,
    items: int = 10_000,
    repeats: int = 5,
    seed: int = 1,
) -> ScenarioResult:
    """``POST /readings`` with a ~1 MiB body of ``items`` bad readings, ``repeats`` times.

    The measurement is :func:`testing.reliability.bad_batch.bad_batch_latency` (the real
    ingest HTTP app with the real quarantine adapter on the local stack, what API Gateway
    would call); this wraps it as a scenario row. The body scales with ``items``
    (1 MiB at 10,000). The figure is the p99 of the request latency, against API Gateway's
    29 s limit and the 2 s goal; every item must come back ``rejected`` and be quarantined.
    """
    from testing.reliability.bad_batch import bad_batch_latency as measure

    del workdir  # nothing to keep on disk
    figures = measure(
        stack,
        clients,
        repeats=repeats,
        items=items,
        target_bytes=max(1, round(1024 * 1024 * items / 10_000)),
        seed=seed,
    )
    statuses = figures["bad_batch_status"]
    return ScenarioResult(
        "bad-batch-latency",
        load=items * repeats,
        faults_injected=items * repeats,
        lost=items * repeats - figures["bad_batch_quarantined_items"],
        duplicated=0,
        extra={
            "bad_batch_p99_s": round(figures["bad_batch_p99_s"], 3),
            "bad_batch_median_s": round(figures["bad_batch_median_s"], 3),
            "bad_batch_median_cpu_s": round(figures["bad_batch_median_cpu_s"], 3),
            "body_bytes": figures["bad_batch_body_bytes"],
            "items": items,
            "repeats": repeats,
            "refused": (figures["bad_batch_rejected"] or 0) * repeats,
            "quarantined_items": figures["bad_batch_quarantined_items"],
            "quarantine_objects_per_request": figures["bad_batch_objects_per_request"],
            "quarantine_messages_per_request": figures["bad_batch_messages_per_request"],
            "statuses": {str(code): repeats for code in statuses},
            "server_errors": sum(1 for code in statuses if code >= 500),
            "oversize_status": figures["oversize_status"],
        },
    )


def _utf8_ok(text: str) -> bool:
    """Whether a partition key can travel at all (Kinesis keys are Unicode, not surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def hostile_stream(
    stack: StackDescription,
    clients: Clients,
    workdir: Path,
    *,
    records: int = 300,
    households: int = 2,
    days: int = 1,
    seed: int = 1,
    readings_per_record: int = 60,
    consumers: frozenset[str] = frozenset({"ArchiveFunction"}),
) -> ScenarioResult:
    """Hostile bytes put straight on ``readings`` among valid records -> its consumers.

    Each hostile record must be quarantined by the archive, with its bytes, a reason and
    its stream coordinates; every valid reading must be archived. ``quarantine_messages``
    counts what reached the quarantine queue from every consumer that ran.
    """
    from testing.reliability.hostile import INJECTIONS, generate, hostile_record
    from testing.reliability.observe import read_quarantine

    batches = real_readings(households, days)
    valid = stream_records(batches, readings_per_record=readings_per_record)
    hostile = generate(hostile_record([r.data for r in valid]), records, seed=seed)
    rng = random.Random(seed)
    keys = [b.household_id for b in batches] + [
        k for k in INJECTIONS if 0 < len(k) <= 256 and _utf8_ok(k)
    ]
    mixed = list(valid)
    for data in hostile:  # at random places; valid records keep their order
        mixed.insert(rng.randrange(len(mixed) + 1), StreamRecord(rng.choice(keys), data))
    KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis")).publish(mixed)
    runner = in_process_runner(stack, clients, workdir, set(consumers))
    with QueueDrain(clients("sqs"), queue_url(stack, clients, "QuarantineQueueUrl")) as drain:
        runner.drain(timeout_s=1200)
    messages = drain.bodies
    s3 = clients("s3")
    bucket = stack.outputs["ArchiveBucketName"]
    archive = read_archive(s3, bucket)
    items = [q for q in read_quarantine(s3, bucket) if q.source.startswith("kinesis:")]
    want = Counter(hostile)
    got = Counter(q.original for q in items)
    return ScenarioResult(
        "hostile-stream",
        load=sum(len(b) for b in batches) + len(hostile),
        faults_injected=len(hostile),
        lost=archive.missing(expected_timestamps(batches)),
        duplicated=archive.duplicated(),
        extra={
            "hostile_records": len(hostile),
            "quarantined_items": len(items),
            "quarantined_fraction": sum((want & got).values()) / len(hostile) if hostile else 1.0,
            "without_reason": sum(1 for q in items if not q.reason or q.coordinates is None),
            "quarantine_messages": len(messages),
            # a message is a pointer to a batch of items: the items it announces
            "quarantine_message_items": sum(map(message_items, messages)),
            "sent_to_failure_queue": sum(m.sent_to_destination for m in runner.stats().values()),
            "valid_records": len(valid),
        },
    )


# --------------------------------------------------------------------------- duplicates


#: The event-driven chain, stage by stage: (queue whose S3 events are faulted, functions).
PIPELINE_STAGES: tuple[tuple[str | None, frozenset[str]], ...] = (
    ("RawEventsQueueUrl", frozenset({"IngestBatchFunction"})),
    (
        None,
        frozenset(
            {
                "ArchiveFunction",
                "RealtimeFunction",
                "GatewayReadingsFunction",
                "GatewayForecastsFunction",
            }
        ),
    ),
    ("ArchiveEventsQueueUrl", frozenset({"MonthlyFunction"})),
    ("ResultsEventsQueueUrl", frozenset({"GatewayResultsFunction"})),
)


def duplicate_and_shuffle(sqs: Any, url: str, rng: random.Random, *, fraction: float) -> int:
    """Take every waiting message, put it back once plus a copy for ``fraction`` of them,
    all in a shuffled order; returns the copies added (the injected duplicates)."""
    bodies = take_messages(sqs, url)
    copies = [b for b in bodies if rng.random() < fraction]
    out = bodies + copies
    rng.shuffle(out)
    for start in range(0, len(out), 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(out[start : start + 10])
            ],
        )
    return len(copies)


def _objects(s3: Any, bucket: str, prefixes: tuple[str, ...]) -> dict[str, bytes]:
    out = {}
    for prefix in prefixes:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


@dataclass(frozen=True)
class PipelineOutputs:
    """What the whole chain produced, with this stack's resource names taken out."""

    archive: dict[str, bytes]
    results: dict[str, bytes]
    forecasts: dict[bytes, int]  # distinct forecast documents -> copies on the stream
    query_store: dict[str, str]

    def differences(self, other: PipelineOutputs) -> dict[str, int]:
        """Keys (objects, forecasts, items) that are missing, extra or different."""

        return {name: len(keys) for name, keys in self.differing_keys(other).items()}

    def differing_keys(self, other: PipelineOutputs) -> dict[str, list[Any]]:
        def diff(a: dict[Any, Any], b: dict[Any, Any]) -> list[Any]:
            keys = (a.keys() ^ b.keys()) | {k for k in a.keys() & b.keys() if a[k] != b[k]}
            return sorted(keys, key=repr)

        return {
            "archive": diff(self.archive, other.archive),
            "results": diff(self.results, other.results),
            "forecasts": sorted(self.forecasts.keys() ^ other.forecasts.keys()),
            "query_store": diff(self.query_store, other.query_store),
        }


#: Query-store attributes that record when an item was written, not what it says.
WALL_CLOCK_ATTRIBUTES = frozenset({"updated_at"})


def pipeline_outputs(stack: StackDescription, clients: Clients) -> PipelineOutputs:
    from testing.reliability.observe import read_stream

    s3 = clients("s3")
    names = {v: f"<{k}>" for k, v in stack.outputs.items() if isinstance(v, str) and len(v) > 6}
    names[stack.stack_name + "-"] = "<stack>-"

    def neutral(text: str) -> str:
        for name, placeholder in names.items():
            text = text.replace(name, placeholder)
        return text

    forecasts = Counter(
        data for _, data in read_stream(clients("kinesis"), stack.outputs["ForecastsStreamName"])
    )
    items = {}
    dynamo = clients("dynamodb")
    for page in dynamo.get_paginator("scan").paginate(TableName=stack.outputs["GatewayTableName"]):
        for item in page["Items"]:
            if item.get("pk", {}).get("S") == "PIPELINE":
                continue  # the pipeline's own health counters (arrival times), not results
            key = json.dumps({k: item[k] for k in ("pk", "sk") if k in item}, sort_keys=True)
            kept = {k: v for k, v in item.items() if k not in WALL_CLOCK_ATTRIBUTES}
            items[neutral(key)] = neutral(json.dumps(kept, sort_keys=True, default=str))
    return PipelineOutputs(
        archive=_objects(s3, stack.outputs["ArchiveBucketName"], ("readings/", "summaries/")),
        results={
            k: neutral(v.decode("latin-1")).encode("latin-1")
            for k, v in _objects(s3, stack.outputs["ModelsBucketName"], ("results/",)).items()
        },
        forecasts=dict(forecasts),
        query_store=items,
    )


def run_pipeline(
    stack: StackDescription,
    clients: Clients,
    workdir: Path,
    *,
    uploads: dict[str, bytes],
    fault: Callable[[str, str], int] | None = None,
) -> int:
    """Uploads through every stage of the chain; ``fault(output, url)`` before a stage."""
    s3 = clients("s3")
    for key, body in uploads.items():
        s3.put_object(
            Bucket=stack.outputs["RawBucketName"], Key=key, Body=body, Metadata=UCI_UPLOAD_METADATA
        )
    injected = 0
    for number, (queue, functions) in enumerate(PIPELINE_STAGES):
        if fault is not None and queue is not None:
            injected += fault(queue, queue_url(stack, clients, queue))
        runner = in_process_runner(stack, clients, workdir / f"stage{number}", set(functions))
        runner.drain(timeout_s=600)
    # Then everything together until quiet: whatever a stage left (a late event) settles.
    everything = set().union(*(functions for _, functions in PIPELINE_STAGES))
    in_process_runner(stack, clients, workdir / "settle", everything).drain(timeout_s=600)
    return injected


def duplicates(
    clean_stack: StackDescription,
    faulty_stack: StackDescription,
    clients: Clients,
    workdir: Path,
    *,
    households: int = 2,
    days: int = 2,
    fraction: float = 0.5,
    seed: int = 1,
) -> ScenarioResult:
    """Duplicated and reordered S3 events at every stage (uploads, summaries, results).

    The clean run is the baseline measured in the same run; the faulty run must give the
    same archive, monthly results, forecasts and query store. Duplicated upload events
    also put every record of an upload on the stream twice, late: the readings consumers
    see duplicated and reordered records too.
    """
    text = uci_text(days)
    uploads = {f"uploads/rel-{h:04d}/readings.txt": text for h in range(1, households + 1)}
    run_pipeline(clean_stack, clients, workdir / "clean", uploads=uploads)
    clean = pipeline_outputs(clean_stack, clients)
    rng = random.Random(seed)
    sqs = clients("sqs")
    injected = run_pipeline(
        faulty_stack,
        clients,
        workdir / "faulty",
        uploads=uploads,
        fault=lambda _queue, url: duplicate_and_shuffle(sqs, url, rng, fraction=fraction),
    )
    faulty = pipeline_outputs(faulty_stack, clients)
    differences = clean.differences(faulty)
    differing = {
        k: [repr(x)[:200] for x in v[:5]] for k, v in clean.differing_keys(faulty).items() if v
    }
    batches = real_readings(households, days)
    archive = read_archive(clients("s3"), faulty_stack.outputs["ArchiveBucketName"])
    return ScenarioResult(
        "duplicates",
        load=sum(len(b) for b in batches),
        faults_injected=injected,
        lost=archive.missing(expected_timestamps(batches)),
        duplicated=archive.duplicated() + differences["forecasts"] + differences["query_store"],
        extra={
            "differences": differences,
            "differing_keys": differing,
            "archive_objects": len(clean.archive),
            "monthly_results": len(clean.results),
            "forecasts": len(clean.forecasts),
            "forecast_copies_on_stream": sum(faulty.forecasts.values()),
            "query_store_items": len(clean.query_store),
        },
    )


def readings_duplicates(
    clean_stack: StackDescription,
    faulty_stack: StackDescription,
    clients: Clients,
    workdir: Path,
    *,
    households: int = 2,
    days: int = 2,
    fraction: float = 0.5,
    seed: int = 1,
    readings_per_record: int = 30,
) -> ScenarioResult:
    """Readings records duplicated and fully reordered (within a household too) on the
    stream -> archive and gateway query store, compared with the same records in order.

    Kinesis keeps a household's records in order, but producers resend (a duplicate
    arrives late) and meters send late data; the archive and the query store must not
    depend on arrival order for what they store.
    """
    functions = {"ArchiveFunction", "GatewayReadingsFunction"}
    batches = real_readings(households, days)
    records = stream_records(batches, readings_per_record=readings_per_record)
    rng = random.Random(seed)
    copies = [r for r in records if rng.random() < fraction]
    shuffled = records + copies
    rng.shuffle(shuffled)
    outputs = []
    for stack, sent, name in ((clean_stack, records, "clean"), (faulty_stack, shuffled, "faulty")):
        KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis")).publish(sent)
        in_process_runner(stack, clients, workdir / name, functions).drain(timeout_s=300)
        outputs.append(pipeline_outputs(stack, clients))
    clean, faulty = outputs
    archive = read_archive(clients("s3"), faulty_stack.outputs["ArchiveBucketName"])
    differing = {
        k: [repr(x)[:200] for x in v[:5]] for k, v in clean.differing_keys(faulty).items() if v
    }
    return ScenarioResult(
        "duplicates-readings",
        load=sum(len(b) for b in batches),
        faults_injected=len(copies) + len(records),  # every record moved, some twice
        lost=archive.missing(expected_timestamps(batches)),
        duplicated=archive.duplicated() + len(differing.get("query_store", [])),
        extra={
            "duplicated_records": len(copies),
            "differences": clean.differences(faulty),
            "differing_keys": differing,
            "archive_objects": len(clean.archive),
            "query_store_items": len(clean.query_store),
        },
    )


# --------------------------------------------------------------------------- API access


def forged_tokens(secret: str, household: str, other: str, now: float) -> dict[str, str]:
    """Tokens an attacker holding ``household``'s token could try, each one invalid."""
    import base64

    from services.gateway.core.tokens import issue_token

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    genuine = issue_token(secret, households=[household], ttl_s=3600, now=now)
    prefix, payload, signature = genuine.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    widened = b64(json.dumps({**claims, "hh": [household, other]}, separators=(",", ":")).encode())
    operator = b64(json.dumps({**claims, "op": True, "hh": []}, separators=(",", ":")).encode())
    return {
        "other_secret": issue_token("another-secret-" * 3, households=[other], ttl_s=60, now=now),
        "widened_households": f"{prefix}.{widened}.{signature}",
        "made_operator": f"{prefix}.{operator}.{signature}",
        "no_signature": f"{prefix}.{payload}.",
        "other_version": f"ws0.{payload}.{signature}",
        "truncated_signature": f"{prefix}.{payload}.{signature[:-4]}",
        "expired": issue_token(secret, households=[household], ttl_s=60, now=now - 61),
        "garbage": "ws1.%%%.###",
    }


def api_access(*, fuzz_examples: int = 200, seed: int = 1) -> ScenarioResult:
    """Every route of the gateway API, asked by household A for household B, by forged and
    expired tokens, and with fuzzed household ids; counts leaks, wrong codes and 5xx.

    The world is the gateway's API test world (fake stores with two households, from
    :mod:`testing.reliability.gateway_world`); the app is the real one. Routes are
    read from the app, so a new route is covered unasked.
    """
    from fastapi.routing import APIRoute
    from hypothesis import strategies as st

    from testing.reliability.gateway_world import NOW, SECRET, A, B, build_world
    from testing.reliability.hostile import bad_household_id, generate

    world = build_world()
    fill = {"household_id": B, "month": "2007-04", "name": "components"}
    routes = [
        (method, route.path)
        for route in world.app.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods or ())
    ]
    protected = [(m, p) for m, p in routes if p != "/health"]

    def call(method: str, path: str, header: str | None, **values: str) -> Any:
        values = {k: quote(v, safe="/%,") for k, v in {**fill, **values}.items()}
        url = path.format(**values) if "{" in path else path
        headers = {"Authorization": header} if header else {}
        body = (
            {"json": {"households": 2}}
            if method == "POST" and "replay" in path
            else {"content": b"x"}
        )
        return world.client.request(method, url, headers=headers, **body)

    token_a = f"Bearer {world.token(A)}"
    leaks = wrong = server_errors = requests = 0
    details: list[str] = []
    for method, path in protected:
        reply = call(method, path, token_a)
        requests += 1
        server_errors += reply.status_code >= 500
        if reply.status_code < 400 and path != "/households":  # the list is filtered, below
            leaks += 1
            details.append(f"{method} {path} -> {reply.status_code}")
        if path == "/households" and B in reply.text:
            leaks += 1
            details.append(f"{method} {path} lists {B}")
    forged = forged_tokens(SECRET, A, B, NOW.timestamp())
    for method, path in protected:
        for name, token in forged.items():
            reply = call(method, path, f"Bearer {token}")
            requests += 1
            server_errors += reply.status_code >= 500
            if reply.status_code != 401:
                wrong += 1
                details.append(f"{name}: {method} {path} -> {reply.status_code}")
            if reply.status_code < 400:
                leaks += 1
    household_routes = [(m, p) for m, p in protected if "{household_id}" in p]
    ids = generate(
        st.one_of(
            bad_household_id().filter(lambda v: isinstance(v, str) and _utf8_ok(v)),
            st.sampled_from(
                [B.upper(), f"{B} ", f"{A}/../{B}", f"{A}%2F..%2F{B}", f"{B}%00", f"{A},{B}"]
            ),
        ),
        fuzz_examples,
        seed=seed,
    )
    for value in ids:
        for method, path in household_routes:
            reply = call(method, path, token_a, household_id=value)
            requests += 1
            server_errors += reply.status_code >= 500
            if reply.status_code < 400 and value != A:
                leaks += 1
                details.append(f"{method} {path} with {value!r} -> {reply.status_code}")
    return ScenarioResult(
        "api-access",
        load=requests,
        faults_injected=len(protected) * (1 + len(forged)) + len(ids) * len(household_routes),
        lost=0,
        duplicated=0,
        extra={
            "routes": len(routes),
            "cross_household_leaks": leaks,
            "bad_tokens_not_401": wrong,
            "server_errors": server_errors,
            "details": details[:10],
        },
    )
