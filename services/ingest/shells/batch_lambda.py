"""Lambda entry point for historical files put under ``uploads/`` in the raw bucket.

S3 sends ``ObjectCreated`` events to a queue; this function gets them one message at a
time (SQS mapping, ``ReportBatchItemFailures``). For each object it streams the file
from S3 (plain or gzip UCI text; never the whole 130 MB in memory), validates it chunk by
chunk through :mod:`services.ingest.core.intake`, quarantines the rejected lines (exact
bytes, line numbers as coordinates), publishes the accepted readings, counts the gap rows
(``?``) without inventing them, and writes a JSON report to ``reports/<key>.json`` in the
same bucket.

Keys: ``uploads/<household>/<name>`` gives the household, which must match the
household-id pattern of every other source (``uploads/victim/../attacker/x.txt`` names
the household ``victim/../attacker``, which is refused); ``uploads/<name>`` uses
``BatchDeps.default_household`` (the UCI house, ``uci-sceaux``). Names end in ``.txt``,
``.txt.gz``, ``.csv`` or ``.csv.gz`` (the content decides gzip).

UCI rows carry no time zone: the uploader declares their UTC offset in the object's
metadata ``utc-offset`` (``x-amz-meta-utc-offset: +01:00``, or ``uci`` for the UCI file's
fixed UTC+01:00; ``wattstream upload --utc-offset``). Without it the file is refused
(``naive_timestamp``), as a JSON reading without a zone is.

The file is read through :mod:`services.ingest.core.upload_guard` (expanded size,
compression ratio, nested compression, line length, rows, duplicate share), so a
decompression bomb costs at most a few MiB of reading. A file that breaks a limit or
cannot be read as a whole (bad key, bad header, no offset, corrupt gzip) is rejected:
its head is quarantined once, its report says why, and the message succeeds, since
retrying bad input cannot help. Failures on our side (S3, the stream, the quarantine)
fail the message instead, which the queue redelivers and finally moves to its
dead-letter queue.

Idempotent: the same object gives the same report key, the same quarantine keys and the
same readings again (the archive keeps one reading per household and timestamp).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import unquote_plus

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict

from services.ingest.adapters.quarantine import S3SqsQuarantine
from services.ingest.core.intake import (
    DEFAULT_INTAKE_LIMITS,
    EMPTY_SEEN,
    IntakeLimits,
    IntakeResult,
    IntakeTotals,
    LineTap,
    declared_offset,
    household_rejection,
    intake_uci_chunk,
    reject_payload,
    uci_header_rejection,
)
from services.ingest.core.upload_guard import (
    DEFAULT_UPLOAD_LIMITS,
    UploadLimits,
    UploadRefused,
    guarded_stream,
    refuse_stored_size,
)
from services.ingest.ports import QuarantineSink
from services.ingest.settings import IngestSettings, UploadSettings
from shared.batch import us_to_datetime
from shared.publishing import DEFAULT_READINGS_PER_RECORD, stream_records
from shared.settings import AwsSettings, settings_from
from shared.shell import (
    BatchOutcome,
    Delivery,
    Environment,
    LambdaEntry,
    ShellDeps,
    batch_handler,
    environment_or_process,
    logger_for,
    metrics_for,
)
from shared.streams.factory import StreamBusSettings, publisher_for
from shared.streams.ports import StreamPublisher
from shared.uci import UCI_HOUSEHOLD_ID, UTC_OFFSET_METADATA, UciFormatError, format_utc_offset
from shared.validation import Rejection

__all__ = [
    "UTC_OFFSET_METADATA",
    "BatchDeps",
    "UploadReport",
    "deps_from_environment",
    "handler",
    "ingest_messages",
    "ingest_object",
    "report_key",
    "upload_household",
]

UPLOAD_PREFIX: Final = "uploads/"
REPORT_PREFIX: Final = "reports/"
UPLOAD_SUFFIXES: Final = (".txt", ".txt.gz", ".csv", ".csv.gz")
_OFFSET_HOW: Final = (
    f"set the object's metadata {UTC_OFFSET_METADATA!r} (x-amz-meta-{UTC_OFFSET_METADATA}; "
    "wattstream upload --utc-offset)"
)
_TEST_EVENT: Final = "s3:TestEvent"


@dataclass(frozen=True)
class BatchDeps(ShellDeps):
    """The upload function's ports (telemetry and clock: :class:`shared.shell.ShellDeps`).

    ``chunk_rows`` bounds memory: 100,000 UCI lines are ~6.5 MB of text, ~6 MB of
    columns and (only when a chunk has rejected rows) ~10 MB of kept raw lines.
    ``upload_limits`` bound what one file may cost (``UploadSettings`` in Lambda).
    """

    s3: Any
    raw_bucket: str
    publisher: StreamPublisher
    quarantine: QuarantineSink
    limits: IntakeLimits = DEFAULT_INTAKE_LIMITS
    upload_limits: UploadLimits = DEFAULT_UPLOAD_LIMITS
    chunk_rows: int = 100_000
    readings_per_record: int = DEFAULT_READINGS_PER_RECORD
    default_household: str = UCI_HOUSEHOLD_ID


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UploadError(_Model):
    code: str
    reason: str


class UploadReport(_Model):
    """What one upload gave; written to ``reports/<key>.json`` (overwritten on replay).

    ``rows`` counts the non-blank data lines: ``rows == accepted + rejected + duplicates
    + missing``. ``malformed`` counts the lines that could not be parsed at all (they are
    among ``rejected``). First/last timestamps are those of the accepted readings.
    ``utc_offset`` is the declared offset the rows were read with. A file refused part
    way (a limit crossed after some chunks) says so in ``error``; the counts are those
    of the chunks handled before, whose accepted readings were published.
    """

    bucket: str
    key: str
    source: str
    household_id: str | None
    utc_offset: str | None = None
    status: Literal["processed", "rejected"]
    error: UploadError | None = None
    size_bytes: int | None = None
    etag: str | None = None
    rows: int
    accepted: int
    rejected: int
    rejected_by_code: dict[str, int]
    duplicates: int
    missing: int
    malformed: int
    quarantined: int
    records_published: int
    first_timestamp: dt.datetime | None
    last_timestamp: dt.datetime | None
    processed_at: dt.datetime
    duration_s: float


def report_key(key: str) -> str:
    """Where the report of ``key`` goes (outside ``uploads/``, so it triggers nothing)."""
    return f"{REPORT_PREFIX}{key}.json"


def upload_household(key: str, default: str) -> str | Rejection:
    """The household of an upload key, or why the key is unusable.

    The household is everything between ``uploads/`` and the file name, checked like a
    household id from any other source: a key with sub-folders or ``..`` segments
    (``uploads/victim/../attacker/x.txt``) names no valid household and is refused.
    """
    name = key.removeprefix(UPLOAD_PREFIX)
    if not name.lower().endswith(UPLOAD_SUFFIXES):
        return Rejection(
            "unsupported_format",
            f"{key[:200]!r} is not a UCI file: names end in {', '.join(UPLOAD_SUFFIXES)}",
            "key",
        )
    household, sep, _ = name.rpartition("/")
    household = household if sep else default
    return household_rejection(household) or household


@dataclass
class _Tally:
    """Running counts over the chunks of one upload."""

    totals: IntakeTotals = field(default_factory=IntakeTotals)
    malformed: int = 0
    quarantined: int = 0
    records: int = 0
    publishing: Counter[str] = field(default_factory=Counter)  # PublishReport counts, summed
    first_us: int | None = None
    last_us: int | None = None

    def span(self, first: int, last: int) -> None:
        self.first_us = first if self.first_us is None else min(self.first_us, first)
        self.last_us = last if self.last_us is None else max(self.last_us, last)


def ingest_object(deps: BatchDeps, bucket: str, key: str) -> UploadReport:
    """Validate, quarantine and publish one uploaded object; write and return its report."""
    if bucket != deps.raw_bucket:
        raise ValueError(f"event for bucket {bucket!r}, this function reads {deps.raw_bucket!r}")
    started = time.monotonic()
    now = deps.clock()
    source = f"upload:{key}"
    household = upload_household(key, deps.default_household)
    tally = _Tally()
    rejection = household if isinstance(household, Rejection) else None
    size = etag = None
    offset: dt.timedelta | Rejection | None = None
    if isinstance(household, str):
        obj = deps.s3.get_object(Bucket=bucket, Key=key)
        size, etag = obj.get("ContentLength"), obj.get("ETag")
        offset = declared_offset(
            (obj.get("Metadata") or {}).get(UTC_OFFSET_METADATA), how=_OFFSET_HOW
        )
        with contextlib.closing(obj["Body"]) as body:
            rejection = _read_object(deps, body, size, household, offset, source, now, tally)
    if rejection is not None:
        size, etag = _reject_object(deps, bucket, key, rejection, source, now, tally)
    report = UploadReport(
        bucket=bucket,
        key=key,
        source=source,
        household_id=None if isinstance(household, Rejection) else household,
        utc_offset=format_utc_offset(offset) if isinstance(offset, dt.timedelta) else None,
        status="rejected" if rejection else "processed",
        error=UploadError(code=rejection.code, reason=rejection.reason) if rejection else None,
        size_bytes=size,
        etag=etag.strip('"') if etag else None,
        rows=tally.totals.received,
        accepted=tally.totals.accepted,
        rejected=tally.totals.rejected,
        rejected_by_code=dict(tally.totals.rejected_by_code),
        duplicates=tally.totals.duplicates,
        missing=tally.totals.missing,
        malformed=tally.malformed,
        quarantined=tally.quarantined,
        records_published=tally.records,
        first_timestamp=None if tally.first_us is None else us_to_datetime(tally.first_us),
        last_timestamp=None if tally.last_us is None else us_to_datetime(tally.last_us),
        processed_at=now,
        duration_s=round(time.monotonic() - started, 3),
    )
    for name, count in (tally.totals.metric_counts() | tally.publishing).items():
        deps.metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    deps.s3.put_object(
        Bucket=bucket,
        Key=report_key(key),
        Body=report.model_dump_json(indent=2).encode(),
        ContentType="application/json",
    )
    return report


def _read_object(
    deps: BatchDeps,
    body: Any,
    size: int | None,
    household: str,
    offset: dt.timedelta | Rejection,
    source: str,
    now: dt.datetime,
    tally: _Tally,
) -> Rejection | None:
    """Stream one object through the guard and the intake; why it was refused, if it was.

    Only verdicts on the input are caught here; any other error (S3, the stream, the
    quarantine) propagates and fails the message, to be retried.
    """
    tap: LineTap | None = None
    try:
        refuse_stored_size(size, deps.upload_limits)
        tap = LineTap(guarded_stream(body, deps.upload_limits), gunzip=False)
        _ingest_chunks(deps, tap, household, offset, source, now, tally)
    except UciFormatError as error:  # raised by the header, before any publishing
        assert tap is not None  # the header is read through the tap
        return uci_header_rejection(tap.take().get(1) or b"", error)
    except UploadRefused as refused:
        rejection = refused.rejection
        if tally.totals.received:
            rejection = Rejection(
                rejection.code,
                f"{rejection.reason} (refused after {tally.totals.received} data lines; "
                f"the {tally.totals.accepted} readings accepted before were published)",
                rejection.field,
            )
        return rejection
    return None


def _ingest_chunks(
    deps: BatchDeps,
    tap: LineTap,
    household: str,
    offset: dt.timedelta | Rejection,
    source: str,
    now: dt.datetime,
    tally: _Tally,
) -> None:
    seen = EMPTY_SEEN
    utc_offset = offset if isinstance(offset, dt.timedelta) else dt.timedelta(0)
    chunks = tap.chunks(household_id=household, chunk_rows=deps.chunk_rows, utc_offset=utc_offset)
    for chunk, raw in chunks:
        if isinstance(offset, Rejection):  # the header was UCI, the times are ambiguous
            raise UploadRefused(offset)
        result, seen = intake_uci_chunk(
            chunk,
            seen=seen,
            source=source,
            now=now,
            limits=deps.limits,
            raw=raw,
            with_outcomes=False,
        )
        _refuse_duplicates(deps.upload_limits, tally.totals + result.totals)
        # Quarantine first: if it fails, nothing of this chunk was claimed yet.
        deps.quarantine.quarantine(result.quarantined)
        records = stream_records(result.accepted, readings_per_record=deps.readings_per_record)
        if records:
            tally.publishing.update(deps.publisher.publish(records).metric_counts())
        _count(tally, chunk.malformed, result, len(records))


def _refuse_duplicates(limits: UploadLimits, totals: IntakeTotals) -> None:
    """Refuse a file mostly made of repeated rows, before the chunk is published."""
    ratio = limits.max_duplicate_ratio
    if ratio is None or totals.received < limits.duplicate_check_after_rows:
        return
    if totals.duplicates > ratio * totals.received:
        raise UploadRefused(
            Rejection(
                "duplicate_rows",
                f"{totals.duplicates} of the first {totals.received} data lines repeat a "
                f"timestamp already read (more than {ratio:.0%}): a repeated row, or the "
                "same data many times",
                "body",
            )
        )


def _count(tally: _Tally, malformed: list[Any], result: IntakeResult, records: int) -> None:
    tally.totals += result.totals
    tally.malformed += len(malformed)
    tally.quarantined += len(result.quarantined)
    tally.records += records
    for batch in result.accepted:
        tally.span(int(batch.timestamps_us[0]), int(batch.timestamps_us[-1]))


def _reject_object(
    deps: BatchDeps,
    bucket: str,
    key: str,
    rejection: Rejection,
    source: str,
    now: dt.datetime,
    tally: _Tally,
) -> tuple[int | None, str | None]:
    """Quarantine the head of an object that cannot be read at all (it stays in S3)."""
    obj = deps.s3.get_object(Bucket=bucket, Key=key)
    with contextlib.closing(obj["Body"]) as body:
        head = body.read(deps.limits.max_quarantined_bytes)
    size = obj.get("ContentLength", len(head))
    result = reject_payload(
        head, rejection, source=source, now=now, limits=deps.limits, body_size=size
    )
    deps.quarantine.quarantine(result.quarantined)
    tally.totals += result.totals
    tally.quarantined += len(result.quarantined)
    return size, obj.get("ETag")


def _object_events(body: dict[str, Any]) -> list[tuple[str, str]]:
    """``(bucket, key)`` of each ObjectCreated record of one S3 event (keys decoded)."""
    return [
        (record["s3"]["bucket"]["name"], unquote_plus(record["s3"]["object"]["key"]))
        for record in body.get("Records", [])
        if str(record.get("eventName", "")).startswith("ObjectCreated:")
    ]


def ingest_messages(records: Sequence[Delivery], deps: BatchDeps) -> BatchOutcome:
    """Ingest the uploads each SQS message names: one failed object fails only its message."""
    outcome = BatchOutcome()
    for record in records:
        try:
            _ingest_message(record, deps, outcome.counts)
        except Exception as error:  # counted; the message fails and is retried
            deps.logger.exception(
                "ingesting an upload failed; its message will be retried",
                extra={"message_id": record.item_id},
            )
            outcome.failed[record.item_id] = f"{type(error).__name__}: {error}"
    return outcome


def _ingest_message(record: Delivery, deps: BatchDeps, counts: Counter[str]) -> None:
    body = json.loads(record.data)
    if body.get("Event") == _TEST_EVENT:  # sent once when notifications are configured
        deps.logger.info("skipping s3:TestEvent", extra={"message_id": record.item_id})
        counts["S3TestEventsSkipped"] += 1
        return
    for bucket, key in _object_events(body):
        if not key.startswith(UPLOAD_PREFIX) or key.endswith("/"):
            deps.logger.warning("not an upload; skipped", extra={"bucket": bucket, "key": key})
            counts["ObjectsSkipped"] += 1
            continue
        try:
            report = ingest_object(deps, bucket, key)
        except Exception:  # counted, then re-raised: the message fails and is retried
            counts["UploadsFailed"] += 1
            raise
        deps.logger.info("upload ingested", extra={"report_key": report_key(key), **_log(report)})
        counts["UploadsRejected" if report.error else "UploadsProcessed"] += 1


def _log(report: UploadReport) -> dict[str, Any]:
    return report.model_dump(
        mode="json", include={"key", "status", "rows", "accepted", "rejected", "missing"}
    )


def deps_from_environment(environment: Environment | None = None) -> BatchDeps:
    """Real adapters from the function's environment (set by the SAM template; None: ours)."""
    env = environment_or_process(environment)
    settings = settings_from(IngestSettings, env)
    aws = settings_from(AwsSettings, env)
    s3 = aws.client("s3")
    return BatchDeps(
        s3=s3,
        raw_bucket=settings.raw_bucket,
        upload_limits=settings_from(UploadSettings, env).limits(),
        publisher=publisher_for(
            settings.readings_stream_name, aws, settings_from(StreamBusSettings, env)
        ),
        quarantine=S3SqsQuarantine(
            settings.archive_bucket, settings.quarantine_queue_url, s3=s3, sqs=aws.client("sqs")
        ),
        logger=logger_for(env),
        metrics=metrics_for(env),
    )


handler = LambdaEntry(
    deps_from_environment,
    batch_handler(
        ingest_messages, kinesis=False, message="upload messages", failed_metric="MessagesFailed"
    ),
)
"""The template's ``IngestBatchFunction`` entry point (:class:`shared.shell.LambdaEntry`)."""
