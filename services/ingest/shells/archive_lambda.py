"""Lambda shell of the archive consumer: Kinesis ``readings`` -> Parquet by household-day.

Why the batch is handled as a whole: one Lambda batch holds up to ``BatchSize`` records of
~1,440 readings each, and a record of a local day spans two UTC days. Writing per record
would rewrite the same household-day object several times per invocation. So the shell
decodes every record, groups ALL their readings by (household, UTC day) with the pure core
(:mod:`services.ingest.core.archive`), and does ONE read-merge-write per household-day,
up to ``max_workers`` household-days at a time (they are independent objects, and S3 round
trips, not CPU, dominate: measured ~19 ms per new household-day on the April slice against
the in-process moto server, 4 S3 calls; ~9 ms for a pure redelivery, 2 GETs).

Failures stay as narrow as the unit of work:

* a household-day whose read or write fails fails only the records that contributed to it
  (reported in ``batchItemFailures``; Lambda retries from the lowest, and the records after
  it that did succeed are skipped on redelivery through the stored stream position);
* a record that does not decode (``CodecError``) is not retried forever: it goes to the
  quarantine with its bytes, reason, source and coordinates, and counts as handled. So
  does a record whose partition key is not its household (it would give that household's
  objects a second, concurrent writer on another shard). So do the readings of a decoded
  record that break the shared physical rules: the record's bytes are quarantined once,
  with the reasons, and its sane readings are archived, so replaying the quarantined record
  later is harmless. The clock rule is not re-applied: whether a reading was too far in
  the future was ingest's call, with its clock, when it was published.
* a record whose readings pass those rules but still cannot be digested (its
  household-day cannot be summarised with it) is quarantined the same way, and the rest
  of that household-day is archived without it: one reading never poisons a day;
* a reading that replaces a different archived value (the last received wins) is kept
  on record under ``conflicts/`` (what it replaced, and by which stream position),
  counted as ``ConflictsRecorded``;
* if the quarantine itself fails, those records are reported as failed (never dropped).

The reply is built by :func:`shared.lambda_batch.settle` (Powertools' ``BatchProcessor``),
so it is exactly Lambda's ``{"batchItemFailures": [{"itemIdentifier": sequence_number}]}``
contract, and never raises for an all-failed batch (the failures are reported instead).
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
    KinesisStreamEvent,
    KinesisStreamRecord,
)

from services.ingest.adapters.archive_store import S3ArchiveStore
from services.ingest.adapters.quarantine import S3SqsQuarantine
from services.ingest.core.archive import (
    ArchiveStore,
    DayKey,
    DayPiece,
    StreamPosition,
    group_by_household_day,
    last_position,
    merge_day,
    summarize_day,
    unmerged,
)
from services.ingest.ports import QuarantineSink
from services.ingest.settings import IngestSettings
from shared.batch import MAX_TIMESTAMP_US, ReadingBatch
from shared.codec import CodecError, decode_record
from shared.lambda_batch import settle
from shared.schema import Quarantined, StreamCoordinates
from shared.settings import AwsSettings
from shared.validation import DEFAULT_LIMITS, SanityLimits, sanity_mask

__all__ = [
    "ArchiveDeps",
    "ArchiveOutcome",
    "archive_records",
    "build_handler",
    "deps_from_environment",
    "handler",
]

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

_SHOWN_REJECTIONS: Final = 3


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class ArchiveDeps:
    """Everything the handler talks to; built once per Lambda sandbox (or by a test)."""

    store: ArchiveStore
    quarantine: QuarantineSink
    logger: Logger
    metrics: Metrics
    clock: Callable[[], dt.datetime] = _utc_now
    limits: SanityLimits = DEFAULT_LIMITS
    max_workers: int = 8


@dataclass
class ArchiveOutcome:
    """What one batch did: the failed records (sequence number -> reason) and counters."""

    failed: dict[str, str] = field(default_factory=dict)
    readings_archived: int = 0
    duplicates_dropped: int = 0
    objects_written: int = 0
    summaries_written: int = 0
    household_days: int = 0
    household_days_failed: int = 0
    quarantined: int = 0
    conflicts: int = 0


@dataclass(frozen=True)
class _Record:
    """One delivered record with its coordinates, decoded or not."""

    data: bytes
    stream: str
    coordinates: StreamCoordinates
    position: StreamPosition

    @classmethod
    def of(cls, record: KinesisStreamRecord) -> _Record:
        stream = record.event_source_arn.rsplit("/", 1)[-1]
        shard_id = record.event_id.partition(":")[0]
        sequence = record.kinesis.sequence_number
        return cls(
            data=record.kinesis.data_as_bytes(),
            stream=stream,
            coordinates=StreamCoordinates(
                stream=stream,
                shard_or_partition=shard_id,
                sequence_or_offset=sequence,
                partition_key=record.kinesis.partition_key,
            ),
            position=StreamPosition(stream, shard_id, int(sequence)),
        )

    @property
    def sequence(self) -> str:
        return self.coordinates.sequence_or_offset


def _refusal(record: _Record, reason: str, now: dt.datetime) -> Quarantined:
    return Quarantined(
        original=record.data,
        reason=reason,
        source=f"kinesis:{record.stream}",
        coordinates=record.coordinates,
        quarantined_at=now,
    )


def _decode(
    record: _Record, deps: ArchiveDeps, now: dt.datetime
) -> tuple[ReadingBatch | None, Quarantined | None]:
    """The sane readings of a record, and the quarantine item if anything was refused."""
    try:
        batch = decode_record(record.data)
    except CodecError as error:
        return None, _refusal(record, f"undecodable record ({error.code}): {error.reason}", now)
    if batch.household_id != record.coordinates.partition_key:
        return None, _refusal(
            record,
            f"wrong partition key: {record.coordinates.partition_key!r} is not the record's "
            f"household {batch.household_id!r} (a household keeps one key, one shard, one "
            "archive writer)",
            now,
        )
    # now_us at the end of time: the future-timestamp rule was ingest's, at publish time.
    ok, rejected = sanity_mask(batch, now_us=MAX_TIMESTAMP_US, limits=deps.limits)
    if not rejected:
        return batch, None
    shown = "; ".join(
        f"row {row}: {rejection.code}: {rejection.reason}"
        for row, rejection in rejected[:_SHOWN_REJECTIONS]
    )
    more = len(rejected) - _SHOWN_REJECTIONS
    reason = (
        f"{len(rejected)} of {len(batch)} readings refused (the others were archived): "
        f"{shown}{f' (+{more} more)' if more > 0 else ''}"
    )
    return batch.take(ok), _refusal(record, reason, now)


@dataclass
class _DayCounts:
    """What one household-day task did (each task has its own: no shared counters)."""

    archived: int = 0
    duplicates: int = 0
    objects: int = 0
    summaries: int = 0
    conflicts: int = 0
    #: pieces that could not be digested (summarised), with why: their records are
    #: quarantined by the caller, the rest of the household-day is archived
    refused: list[tuple[DayPiece, str]] = field(default_factory=list)


def _undigestible(key: DayKey, pieces: Sequence[DayPiece]) -> list[tuple[DayPiece, str]]:
    """The pieces that cannot be summarised on their own, and why."""
    refused: list[tuple[DayPiece, str]] = []
    for piece in pieces:
        try:
            summarize_day(piece.rows, key.day)
        except ValueError as error:  # pydantic's ValidationError is a ValueError
            refused.append((piece, f"{type(error).__name__}: {str(error)[:500]}"))
    return refused


def _archive_day(
    key: DayKey, pieces: Sequence[DayPiece], store: ArchiveStore, counts: _DayCounts
) -> None:
    """Read, merge what the object does not hold yet, write if changed, then the summary.

    The summary is computed before anything is written: if the merged day cannot be
    summarised (a reading no consumer can digest slipped through), the pieces that
    cannot be summarised on their own are set aside (``counts.refused``) and the rest of
    the household-day is archived without them. What a merge replaced with a different
    value is written under ``conflicts/`` first, so nothing is replaced silently. The
    Parquet object is written before the summary, so a summary never describes rows that
    are not archived; the summary is checked even when the object needs no rewrite, which
    repairs a summary lost between the two writes by an earlier, failed attempt.
    """
    stored = store.read_day(key)
    pending = unmerged(pieces, stored.merged_up_to if stored else None)
    rows = stored.rows if stored else None
    counts.duplicates += sum(len(p.rows) for p in pieces) - sum(len(p.rows) for p in pending)
    merge = merge_day(rows, [p.rows for p in pending]) if pending else None
    candidate = merge.rows if merge is not None else rows
    if candidate is None:  # unreachable: pieces are never empty, so neither is pending then
        raise AssertionError(f"no rows for {key}")
    try:
        summary = summarize_day(candidate, key.day)
    except ValueError:
        counts.refused = _undigestible(key, pending)
        if not counts.refused:
            raise  # the stored rows themselves: fail the day, it is retried
        refused = {id(piece) for piece, _ in counts.refused}
        pending = [p for p in pending if id(p) not in refused]
        merge = merge_day(rows, [p.rows for p in pending]) if pending else None
        candidate = merge.rows if merge is not None else rows
        if candidate is None:  # every piece refused and nothing archived yet
            return
        summary = summarize_day(candidate, key.day)
    if merge is not None and pending:
        counts.duplicates += merge.duplicates
        if merge.replaced is not None:
            store.write_conflicts(key, merge.replaced, replaced_by=last_position(pending))
            counts.conflicts += merge.conflicts
            counts.objects += 1
        if merge.changed:
            store.write_day(key, merge.rows, merged_up_to=last_position(pending))
            counts.archived += merge.added + merge.updated
            counts.objects += 1
    if store.write_summary(summary):
        counts.objects += 1
        counts.summaries += 1


def _run_day(
    key: DayKey, pieces: Sequence[DayPiece], store: ArchiveStore
) -> tuple[_DayCounts, Exception | None]:
    counts = _DayCounts()
    try:
        _archive_day(key, pieces, store, counts)
    except Exception as error:  # one household-day fails, not the batch
        return counts, error
    return counts, None


def archive_records(records: Sequence[KinesisStreamRecord], deps: ArchiveDeps) -> ArchiveOutcome:
    """Archive one delivered batch; returns the failed records and the counters.

    Household-days are independent objects, so up to ``deps.max_workers`` of them are
    archived at once (S3 round trips dominate); each is still handled by one task only.
    """
    now = deps.clock()
    outcome = ArchiveOutcome()
    delivered = [_Record.of(record) for record in records]
    decoded: list[tuple[StreamPosition, ReadingBatch]] = []
    contributors: list[_Record] = []  # decoded[i] came from contributors[i]
    refused: list[tuple[_Record, Quarantined]] = []
    for record in delivered:
        batch, refusal = _decode(record, deps, now)
        if refusal is not None:
            refused.append((record, refusal))
        if batch is not None and len(batch):
            decoded.append((record.position, batch))
            contributors.append(record)

    groups = group_by_household_day(decoded)
    workers = max(1, min(deps.max_workers, len(groups)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(
            pool.map(_run_day, groups.keys(), groups.values(), itertools.repeat(deps.store))
        )
    for (key, pieces), (counts, error) in zip(groups.items(), results, strict=True):
        outcome.household_days += 1
        outcome.readings_archived += counts.archived
        outcome.duplicates_dropped += counts.duplicates
        outcome.objects_written += counts.objects
        outcome.summaries_written += counts.summaries
        outcome.conflicts += counts.conflicts
        for piece, why in counts.refused:
            record = contributors[piece.source]
            refused.append(
                (
                    record,
                    _refusal(
                        record,
                        f"undigestible: {len(piece.rows)} readings of {key.household_id} "
                        f"{key.day} cannot be summarised ({why}); the rest of the day was "
                        "archived",
                        now,
                    ),
                )
            )
        if error is None:
            continue
        outcome.household_days_failed += 1
        deps.logger.error(
            "archiving a household-day failed; its records will be retried",
            extra={"household_id": key.household_id, "day": key.day.isoformat()},
            exc_info=error,
        )
        reason = f"{key.household_id} {key.day}: {type(error).__name__}: {error}"
        for piece in pieces:
            outcome.failed.setdefault(contributors[piece.source].sequence, reason)

    if refused:
        try:
            deps.quarantine.quarantine([item for _, item in refused])
            outcome.quarantined = len(refused)
        except Exception as error:  # retried, never dropped
            deps.logger.exception("quarantine failed; the refused records will be retried")
            for record, _ in refused:
                outcome.failed.setdefault(record.sequence, f"quarantine failed: {error}")
    return outcome


def _emit(outcome: ArchiveOutcome, metrics: Metrics, logger: Logger, records: int) -> None:
    counts = {
        "ReadingsArchived": outcome.readings_archived,
        "DuplicatesDropped": outcome.duplicates_dropped,
        "ObjectsWritten": outcome.objects_written,
        "SummariesWritten": outcome.summaries_written,
        "Quarantined": outcome.quarantined,
        "ConflictsRecorded": outcome.conflicts,
        "HouseholdDaysFailed": outcome.household_days_failed,
        "RecordsFailed": len(outcome.failed),
    }
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info(
        "archived batch",
        extra={"records": records, "household_days": outcome.household_days, **counts},
    )


def build_handler(deps: ArchiveDeps) -> Handler:
    """The Lambda handler over ``deps`` (the composition root calls this once)."""

    @deps.metrics.log_metrics
    @deps.logger.inject_lambda_context
    def archive_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        records = list(KinesisStreamEvent(event).records)
        outcome = archive_records(records, deps)
        _emit(outcome, deps.metrics, deps.logger, len(records))
        return settle(event, context, outcome.failed, kinesis=True)

    return archive_handler


# ---------------------------------------------------------------------- composition root


def deps_from_environment() -> ArchiveDeps:
    """Real adapters from the function's environment (set by the SAM template)."""
    settings = IngestSettings()  # type: ignore[call-arg]  # read from the environment
    aws = AwsSettings()
    s3 = aws.client("s3")
    return ArchiveDeps(
        store=S3ArchiveStore(settings.archive_bucket, s3=s3),
        quarantine=S3SqsQuarantine(
            settings.archive_bucket, settings.quarantine_queue_url, s3=s3, sqs=aws.client("sqs")
        ),
        logger=Logger(),
        metrics=Metrics(),
    )


@functools.cache
def _default_handler() -> Handler:
    return build_handler(deps_from_environment())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The template's ``ArchiveFunction`` entry point; builds its dependencies on first use."""
    return _default_handler()(event, context)
