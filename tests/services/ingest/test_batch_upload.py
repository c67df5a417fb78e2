"""The batch upload handler: checked-in SQS/S3 events, then end to end on the local stack
(file under uploads/ -> S3 event -> queue -> runner -> handler -> stream, report, quarantine)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import numpy as np
import pytest
from aws_lambda_powertools import Logger, Metrics

from services.ingest.adapters.quarantine import S3SqsQuarantine
from services.ingest.core.upload_guard import UploadLimits
from services.ingest.shells.batch_lambda import (
    UTC_OFFSET_METADATA,
    BatchDeps,
    ingest_object,
    report_key,
    upload_household,
)
from services.ingest.shells.batch_lambda import handler as batch_entry
from shared.quarantine import read_quarantine_object
from shared.schema import Quarantined
from shared.streams.kinesis import KinesisPublisher
from shared.streams.ports import PublishError, PublishReport, StreamPublisher, StreamRecord
from shared.uci import UCI_HEADER, iter_uci
from shared.validation import Rejection
from testing.reliability.bombs import upload_bombs
from tests.conftest import APRIL_2007
from tests.services.ingest.fakes import MemoryPublisher, MemoryQuarantine
from tests.services.ingest.test_http import (
    lambda_context,
    load_event,
    published,
    stream_records_on,
)
from wattstream.hosting.template import StackDescription
from wattstream.local.runner import EventSourceRunner

NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
UCI_CLOCK = {UTC_OFFSET_METADATA: "uci"}  # the uploader declares the UCI file's clock
ROW = "1/4/2007;00:{:02d}:00;3.480;0.238;239.530;14.400;2.000;1.000;18.000\r\n"
UPLOAD = (
    UCI_HEADER
    + "\r\n"
    + ROW.format(0)  # line 2: accepted
    + "1/4/2007;00:01:00;?;?;?;?;?;?;\r\n"  # line 3: missing, counted
    + ROW.format(2).replace("239.530", "0.000")  # line 4: implausible voltage
    + "1/4/2007;00:03:00;3.480;0.238\r\n"  # line 5: malformed
    + ROW.format(0)  # line 6: duplicate of line 2
    + ROW.format(4)  # line 7: accepted
).encode()


def queue_url(stack: StackDescription, clients: Any, output: str) -> str:
    name = stack.outputs[output].rsplit("/", 1)[1]
    return clients("sqs").get_queue_url(QueueName=name)["QueueUrl"]


def make_deps(stack: StackDescription, clients: Any, **overrides: Any) -> BatchDeps:
    """The real adapters on the stack, as the composition root builds them."""
    s3 = clients("s3")
    metrics = Metrics(namespace="wattstream-test")
    metrics.clear_metrics()
    deps = BatchDeps(
        s3=s3,
        raw_bucket=stack.outputs["RawBucketName"],
        publisher=KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis")),
        quarantine=S3SqsQuarantine(
            stack.outputs["ArchiveBucketName"],
            queue_url(stack, clients, "QuarantineQueueUrl"),
            s3=s3,
            sqs=clients("sqs"),
        ),
        clock=lambda: NOW,
        logger=Logger(service="ingest-batch-test"),
        metrics=metrics,
    )
    return replace(deps, **overrides)


def run(stack: StackDescription, clients: Any, deps: BatchDeps, tmp_path: Path) -> Any:
    runner = EventSourceRunner(
        stack,
        clients=clients,
        checkpoint_path=tmp_path / "checkpoints.json",
        handlers={"IngestBatchFunction": batch_entry.build(deps)},
        functions={"IngestBatchFunction"},
        idle_sleep_s=0.01,
    )
    runner.drain(timeout_s=120)
    return runner


def report(stack: StackDescription, clients: Any, key: str) -> dict[str, Any]:
    obj = clients("s3").get_object(Bucket=stack.outputs["RawBucketName"], Key=report_key(key))
    return json.loads(obj["Body"].read())


def quarantined(stack: StackDescription, clients: Any) -> list[dict[str, Any]]:
    s3, bucket = clients("s3"), stack.outputs["ArchiveBucketName"]
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="quarantine/").get("Contents", [])
    return [
        item.model_dump(mode="json")
        for o in listing
        for item in read_quarantine_object(
            s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        )
    ]


def quarantine_messages(stack: StackDescription, clients: Any) -> list[dict[str, Any]]:
    sqs, url = clients("sqs"), queue_url(stack, clients, "QuarantineQueueUrl")
    bodies: list[dict[str, Any]] = []
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        bodies.extend(json.loads(m["Body"]) for m in got)
    return bodies


# ------------------------------------------------------------------------ pure helpers


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("uploads/MAC000002/2013.csv", "MAC000002"),
        ("uploads/april.txt.gz", "uci-sceaux"),
        ("uploads/h1/file.TXT", "h1"),
        ("uploads/h1/sub/dir/file.txt", "bad_household_id"),  # the folder is the household
        ("uploads/victim/../attacker/x.txt", "bad_household_id"),
        ("uploads/../x.txt", "bad_household_id"),
        ("uploads//x.txt", "missing_household"),
        ("uploads/h1/data.xlsx", "unsupported_format"),
        ("uploads/bad id!/data.txt", "bad_household_id"),
        ("uploads/'; DROP TABLE x;--/data.txt", "bad_household_id"),
    ],
)
def test_upload_household_from_key(key, expected):
    household = upload_household(key, "uci-sceaux")

    assert (household.code if isinstance(household, Rejection) else household) == expected


def test_report_key_is_outside_uploads():
    assert report_key("uploads/h1/a b.txt") == "reports/uploads/h1/a b.txt.json"


# ------------------------------------------------------------------ checked-in events


class UnusedS3:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"S3 must not be called, got {name}")


def test_batch_handler_skips_s3_test_event():
    deps = BatchDeps(
        s3=UnusedS3(),
        raw_bucket="raw",
        publisher=MemoryPublisher(),
        quarantine=MemoryQuarantine(),
        metrics=Metrics(namespace="wattstream-test"),
    )

    response = batch_entry.build(deps)(load_event("sqs_s3_test_event.json"), lambda_context())

    assert response == {"batchItemFailures": []}


def test_batch_handler_checked_in_event_decodes_key_and_writes_report(deploy_stack, clients):
    stack = deploy_stack()
    bucket = stack.outputs["RawBucketName"]
    key = "uploads/uci-sceaux/april 2007(1).txt"  # as the event's URL-encoded key decodes
    clients("s3").put_object(Bucket=bucket, Key=key, Body=UPLOAD, Metadata=UCI_CLOCK)
    event = load_event("sqs_s3_object_created.json")
    body = json.loads(event["Records"][0]["body"])
    body["Records"][0]["s3"]["bucket"]["name"] = bucket
    event["Records"][0]["body"] = json.dumps(body)
    publisher, quarantine = MemoryPublisher(), MemoryQuarantine()
    deps = make_deps(stack, clients, publisher=publisher, quarantine=quarantine)

    response = batch_entry.build(deps)(event, lambda_context("IngestBatchFunction"))

    assert response == {"batchItemFailures": []}
    assert len(published(publisher.records)["uci-sceaux"]) == 2
    assert sorted(q.coordinates.sequence_or_offset for q in quarantine.items) == ["4", "5"]
    written = report(stack, clients, key)
    assert (written["accepted"], written["rejected"], written["missing"]) == (2, 2, 1)


def test_batch_handler_event_for_another_bucket_fails_only_its_message():
    deps = BatchDeps(
        s3=UnusedS3(),
        raw_bucket="raw",
        publisher=MemoryPublisher(),
        quarantine=MemoryQuarantine(),
        metrics=Metrics(namespace="wattstream-test"),
    )
    misrouted = load_event("sqs_s3_object_created.json")["Records"][0]
    test_event = load_event("sqs_s3_test_event.json")["Records"][0]

    response = batch_entry.build(deps)({"Records": [test_event, misrouted]}, lambda_context())

    assert response == {"batchItemFailures": [{"itemIdentifier": misrouted["messageId"]}]}


# -------------------------------------------------------------------- on the local stack


def test_batch_upload_publishes_valid_rows_quarantines_rest_and_reports(
    deploy_stack, clients, tmp_path
):
    stack = deploy_stack()
    key = "uploads/h1/april part+1.txt"
    clients("s3").put_object(
        Bucket=stack.outputs["RawBucketName"], Key=key, Body=UPLOAD, Metadata=UCI_CLOCK
    )

    run(stack, clients, make_deps(stack, clients), tmp_path)

    readings = published(stream_records_on(clients, stack.outputs["ReadingsStreamName"]))["h1"]
    minutes = (readings.timestamps_us - readings.timestamps_us[0]) // 60_000_000
    assert minutes.tolist() == [0, 4]
    assert readings.columns["voltage_v"].tolist() == [239.53, 239.53]
    written = report(stack, clients, key)
    assert written["status"] == "processed"
    assert {k: written[k] for k in ("rows", "accepted", "rejected", "duplicates", "missing")} == {
        "rows": 6,
        "accepted": 2,
        "rejected": 2,
        "duplicates": 1,
        "missing": 1,
    }
    assert written["rejected_by_code"] == {"implausible_voltage": 1, "malformed_line": 1}
    assert written["malformed"] == 1
    assert written["first_timestamp"] == "2007-03-31T23:00:00Z"
    assert written["last_timestamp"] == "2007-03-31T23:04:00Z"
    items = sorted(
        quarantined(stack, clients), key=lambda q: q["coordinates"]["sequence_or_offset"]
    )
    lines = UPLOAD.split(b"\r\n")
    assert [(q["coordinates"]["sequence_or_offset"], q["reason"].split(":")[0]) for q in items] == [
        ("4", "implausible_voltage"),
        ("5", "malformed_line"),
    ]
    assert [q["source"] for q in items] == [f"upload:{key}"] * 2
    assert [q["coordinates"]["partition_key"] for q in items] == ["h1", "h1"]
    originals = [Quarantined.model_validate(q).original for q in items]
    assert originals == [lines[3], lines[4]]
    assert sum(m["items"] for m in quarantine_messages(stack, clients)) == 2  # as pointers


def test_batch_upload_real_gzip_slice_without_household_uses_default(
    deploy_stack, clients, tmp_path
):
    stack = deploy_stack()
    key = "uploads/uci_household_power_consumption_2007-04.txt.gz"
    clients("s3").put_object(
        Bucket=stack.outputs["RawBucketName"],
        Key=key,
        Body=APRIL_2007.read_bytes(),
        Metadata=UCI_CLOCK,
    )
    expected = np.concatenate([c.readings.timestamps_us for c in iter_uci(APRIL_2007)])

    run(stack, clients, make_deps(stack, clients, chunk_rows=10_000), tmp_path)

    readings = published(stream_records_on(clients, stack.outputs["ReadingsStreamName"]))
    np.testing.assert_array_equal(np.sort(readings["uci-sceaux"].timestamps_us), expected)
    written = report(stack, clients, key)
    assert (written["rows"], written["accepted"], written["missing"]) == (43_200, 39_477, 3_723)
    assert written["rejected"] == written["duplicates"] == 0
    assert quarantined(stack, clients) == []


def test_batch_upload_reprocessed_gives_same_report_key_and_same_readings(deploy_stack, clients):
    stack = deploy_stack()
    key = "uploads/h1/again.csv"
    clients("s3").put_object(
        Bucket=stack.outputs["RawBucketName"], Key=key, Body=UPLOAD, Metadata=UCI_CLOCK
    )
    publisher = MemoryPublisher()
    deps = make_deps(stack, clients, publisher=publisher)

    first = ingest_object(deps, stack.outputs["RawBucketName"], key)
    second = ingest_object(deps, stack.outputs["RawBucketName"], key)

    half = len(publisher.records) // 2
    assert publisher.records[:half] == publisher.records[half:]
    assert first.model_dump(exclude={"duration_s"}) == second.model_dump(exclude={"duration_s"})
    reports = clients("s3").list_objects_v2(
        Bucket=stack.outputs["RawBucketName"], Prefix="reports/"
    )
    assert [o["Key"] for o in reports["Contents"]] == [report_key(key)]
    assert len(quarantined(stack, clients)) == 2  # overwritten, not duplicated


@pytest.mark.parametrize(
    ("key", "body", "code"),
    [
        ("uploads/bad id!/x.txt", UPLOAD, "bad_household_id"),
        ("uploads/h1/x.json", UPLOAD, "unsupported_format"),
        ("uploads/h1/x.csv", b"timestamp,power\n2007-04-01T00:00:00Z,3.48\n", "malformed_csv"),
        ("uploads/h1/x.txt", UPLOAD.decode().encode("utf-16"), "bad_encoding"),
        ("uploads/h1/empty.txt", b"", "malformed_csv"),
    ],
)
def test_batch_upload_unreadable_file_is_rejected_whole_and_kept(
    deploy_stack, clients, tmp_path, key, body, code
):
    stack = deploy_stack()
    clients("s3").put_object(Bucket=stack.outputs["RawBucketName"], Key=key, Body=body)
    publisher = MemoryPublisher()

    runner = run(stack, clients, make_deps(stack, clients, publisher=publisher), tmp_path)

    written = report(stack, clients, key)
    assert (written["status"], written["error"]["code"]) == ("rejected", code)
    (item,) = quarantined(stack, clients)
    assert Quarantined.model_validate(item).original == body
    assert item["reason"].startswith(code + ":")
    assert publisher.records == []
    assert runner.stats()["IngestBatchFunctionUploads"].partial_failures == 0


# ------------------------------------------------- bombs and naive times (issue 13 corpus)


def dead_letters(stack: StackDescription, clients: Any) -> list[Any]:
    sqs, dlq = clients("sqs"), queue_url(stack, clients, "RawEventsDeadLetterQueueUrl")
    return sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])


def assert_rejected_once(
    stack: StackDescription, clients: Any, runner: Any, key: str, code: str
) -> dict[str, Any]:
    """A ``rejected`` report, one quarantine entry and one message, no failed message."""
    written = report(stack, clients, key)
    assert (written["status"], written["error"]["code"]) == ("rejected", code)
    assert written["error"]["reason"]
    (item,) = quarantined(stack, clients)
    assert item["reason"].startswith(code + ":")
    assert item["source"] == f"upload:{key}"
    assert len(quarantine_messages(stack, clients)) == 1
    stats = runner.stats()["IngestBatchFunctionUploads"]
    assert stats.partial_failures == 0
    assert dead_letters(stack, clients) == []
    return written


@pytest.mark.parametrize("bomb", upload_bombs(), ids=lambda b: b.name)
def test_batch_upload_bomb_is_rejected_once_and_never_retried(
    deploy_stack, clients, tmp_path, bomb
):
    stack = deploy_stack(parameters={"RawEventsVisibilityTimeout": "1"})
    clients("s3").put_object(
        Bucket=stack.outputs["RawBucketName"], Key=bomb.key, Body=bomb.body, Metadata=UCI_CLOCK
    )
    publisher = MemoryPublisher()

    runner = run(stack, clients, make_deps(stack, clients, publisher=publisher), tmp_path)

    written = assert_rejected_once(stack, clients, runner, bomb.key, bomb.code)
    assert publisher.records == []
    assert written["accepted"] == 0
    (item,) = quarantined(stack, clients)
    assert Quarantined.model_validate(item).original == bomb.body  # each under 10 MiB


def test_batch_upload_one_row_copies_refused_by_duplicates_before_publishing(deploy_stack, clients):
    """With the ratio check off, the duplicate share refuses the file on its first chunk."""
    stack = deploy_stack()
    bomb = next(b for b in upload_bombs() if b.name == "one-row-8388608-times")
    clients("s3").put_object(
        Bucket=stack.outputs["RawBucketName"], Key=bomb.key, Body=bomb.body, Metadata=UCI_CLOCK
    )
    publisher, quarantine = MemoryPublisher(), MemoryQuarantine()
    limits = UploadLimits(max_compression_ratio=1e9)
    deps = make_deps(stack, clients, publisher=publisher, quarantine=quarantine)

    written = ingest_object(
        replace(deps, upload_limits=limits), stack.outputs["RawBucketName"], bomb.key
    )

    assert (written.status, written.error.code) == ("rejected", "duplicate_rows")
    assert (written.accepted, written.rejected) == (0, 1)  # the file, as one item
    assert publisher.records == []
    assert len(quarantine.items) == 1


def test_batch_upload_limit_crossed_midway_reports_what_was_published(deploy_stack, clients):
    stack = deploy_stack()
    key = "uploads/h1/long.txt"
    clients("s3").put_object(
        Bucket=stack.outputs["RawBucketName"], Key=key, Body=UPLOAD, Metadata=UCI_CLOCK
    )
    publisher = MemoryPublisher()
    deps = make_deps(stack, clients, publisher=publisher, chunk_rows=2)
    limits = UploadLimits(max_rows=4, read_block_bytes=64)  # crossed on the third chunk

    written = ingest_object(
        replace(deps, upload_limits=limits), stack.outputs["RawBucketName"], key
    )

    assert (written.status, written.error.code) == ("rejected", "too_many_rows")
    assert "were published" in written.error.reason
    assert written.accepted == len(published(publisher.records)["h1"]) > 0


@pytest.mark.parametrize(
    ("metadata", "code"),
    [({}, "naive_timestamp"), ({UTC_OFFSET_METADATA: "CEST"}, "bad_utc_offset")],
)
def test_batch_upload_without_a_declared_offset_is_refused_once(
    deploy_stack, clients, tmp_path, metadata, code
):
    stack = deploy_stack()
    key = "uploads/h1/naive.txt"
    clients("s3").put_object(
        Bucket=stack.outputs["RawBucketName"], Key=key, Body=UPLOAD, Metadata=metadata
    )
    publisher = MemoryPublisher()

    runner = run(stack, clients, make_deps(stack, clients, publisher=publisher), tmp_path)

    written = assert_rejected_once(stack, clients, runner, key, code)
    assert UTC_OFFSET_METADATA in written["error"]["reason"]
    assert publisher.records == []


@pytest.mark.parametrize(
    ("offset", "first"), [("uci", "2007-03-31T23:00:00Z"), ("-05:00", "2007-04-01T05:00:00Z")]
)
def test_batch_upload_reads_naive_times_with_the_declared_offset(
    deploy_stack, clients, offset, first
):
    stack = deploy_stack()
    key = "uploads/h1/declared.txt"
    clients("s3").put_object(
        Bucket=stack.outputs["RawBucketName"],
        Key=key,
        Body=UPLOAD,
        Metadata={UTC_OFFSET_METADATA: offset},
    )

    written = ingest_object(
        make_deps(stack, clients, publisher=MemoryPublisher()), stack.outputs["RawBucketName"], key
    )

    assert written.status == "processed"
    assert written.first_timestamp.isoformat().replace("+00:00", "Z") == first
    assert written.utc_offset == ("+01:00" if offset == "uci" else offset)


class FailingFor:
    """Publishes through a real publisher, except records of one household."""

    def __init__(self, inner: StreamPublisher, household: str) -> None:
        self.inner, self.household = inner, household

    def publish(self, records: Sequence[StreamRecord]) -> PublishReport:
        if any(r.partition_key == self.household for r in records):
            raise PublishError("stream unavailable", failed=records)
        return self.inner.publish(records)


def test_batch_upload_publish_failure_fails_only_its_message_then_dead_letters(
    deploy_stack, clients, tmp_path
):
    stack = deploy_stack(parameters={"RawEventsVisibilityTimeout": "1"})
    bucket = stack.outputs["RawBucketName"]
    clients("s3").put_object(
        Bucket=bucket, Key="uploads/good/a.txt", Body=UPLOAD, Metadata=UCI_CLOCK
    )
    clients("s3").put_object(
        Bucket=bucket, Key="uploads/doomed/b.txt", Body=UPLOAD, Metadata=UCI_CLOCK
    )
    deps = make_deps(stack, clients)
    deps = replace(deps, publisher=FailingFor(deps.publisher, "doomed"))
    runner = EventSourceRunner(
        stack,
        clients=clients,
        checkpoint_path=tmp_path / "checkpoints.json",
        handlers={"IngestBatchFunction": batch_entry.build(deps)},
        functions={"IngestBatchFunction"},
        idle_sleep_s=0.01,
    )
    sqs, dlq = clients("sqs"), queue_url(stack, clients, "RawEventsDeadLetterQueueUrl")

    dead: list[dict[str, Any]] = []
    deadline = time.monotonic() + 120  # a bound for a hung test, not a speed goal
    while not dead and time.monotonic() < deadline:
        runner.poll_once()
        time.sleep(0.2)
        dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])

    (message,) = dead
    (record,) = json.loads(message["Body"])["Records"]
    assert unquote_plus(record["s3"]["object"]["key"]) == "uploads/doomed/b.txt"
    assert report(stack, clients, "uploads/good/a.txt")["accepted"] == 2
    readings = published(stream_records_on(clients, stack.outputs["ReadingsStreamName"]))
    assert set(readings) == {"good"}


@pytest.mark.slow
def test_batch_upload_full_uci_file_streams_in_chunks(deploy_stack, clients, full_uci):
    """The full 2,075,259-row file, streamed from S3 through the real core; published to
    a counting publisher (moto's Kinesis is not the subject here)."""
    stack = deploy_stack()
    key = "uploads/household_power_consumption.txt.gz"
    clients("s3").put_object(
        Bucket=stack.outputs["RawBucketName"],
        Key=key,
        Body=full_uci.read_bytes(),
        Metadata=UCI_CLOCK,
    )
    publisher = CountingPublisher()

    written = ingest_object(
        make_deps(stack, clients, publisher=publisher), stack.outputs["RawBucketName"], key
    )

    assert (written.rows, written.accepted, written.missing) == (2_075_259, 2_049_280, 25_979)
    assert written.rejected == written.duplicates == 0
    assert publisher.readings == 2_049_280
    assert written.first_timestamp == dt.datetime(2006, 12, 16, 16, 24, tzinfo=dt.UTC)


class CountingPublisher:
    """Decodes every record and counts its readings (keeps no data)."""

    def __init__(self) -> None:
        self.readings = 0

    def publish(self, records: Sequence[StreamRecord]) -> PublishReport:
        self.readings += sum(len(published([r])[r.partition_key]) for r in records)
        return PublishReport(records=len(records), bytes=0, requests=1)
