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

import itertools
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

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
from shared.batch import ReadingBatch
from shared.schema import Quarantined
from shared.settings import AwsSettings, settings_from
from shared.shell import (
    BatchOutcome,
    Delivery,
    LambdaEntry,
    ShellDeps,
    batch_handler,
    decode_readings,
    environment_or_process,
    logger_for,
    metrics_for,
    set_aside,
)
from shared.validation import DEFAULT_LIMITS, SanityLimits

__all__ = ["ArchiveDeps", "archive_records", "deps_from_environment", "handler"]

#: The counters every batch emits (as EMF metrics of these names), zeros included.
COUNTERS: Final = (
    "ReadingsArchived",
    "DuplicatesDropped",
    "ObjectsWritten",
    "SummariesWritten",
    "Quarantined",
    "ConflictsRecorded",
    "HouseholdDaysFailed",
)


@dataclass(frozen=True)
class ArchiveDeps(ShellDeps):
    """The archive consumer's ports (telemetry and clock: :class:`shared.shell.ShellDeps`)."""

    store: ArchiveStore
    quarantine: QuarantineSink
    limits: SanityLimits = DEFAULT_LIMITS
    max_workers: int = 8


def _position(record: Delivery) -> StreamPosition:
    return StreamPosition(record.stream, record.shard, int(record.item_id))


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


def archive_records(records: Sequence[Delivery], deps: ArchiveDeps) -> BatchOutcome:
    """Archive one delivered batch; returns the failed records and the counters.

    Household-days are independent objects, so up to ``deps.max_workers`` of them are
    archived at once (S3 round trips dominate); each is still handled by one task only.
    """
    now = deps.clock()
    outcome = BatchOutcome.counting(*COUNTERS)
    counts = outcome.counts
    counts["Records"] = len(records)
    decoded: list[tuple[StreamPosition, ReadingBatch]] = []
    contributors: list[Delivery] = []  # decoded[i] came from contributors[i]
    refused: list[tuple[Delivery, Quarantined]] = []
    for record in records:
        verdict = decode_readings(record, deps.limits)
        if verdict.reason is not None:  # refused whole, or some readings (quarantined once)
            refused.append((record, record.quarantined(verdict.reason, now)))
        if verdict.batch is not None and len(verdict.batch):
            decoded.append((_position(record), verdict.batch))
            contributors.append(record)

    groups = group_by_household_day(decoded)
    workers = max(1, min(deps.max_workers, len(groups)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(
            pool.map(_run_day, groups.keys(), groups.values(), itertools.repeat(deps.store))
        )
    for (key, pieces), (day, error) in zip(groups.items(), results, strict=True):
        counts["HouseholdDays"] += 1
        counts["ReadingsArchived"] += day.archived
        counts["DuplicatesDropped"] += day.duplicates
        counts["ObjectsWritten"] += day.objects
        counts["SummariesWritten"] += day.summaries
        counts["ConflictsRecorded"] += day.conflicts
        for piece, why in day.refused:
            record = contributors[piece.source]
            reason = (
                f"undigestible: {len(piece.rows)} readings of {key.household_id} {key.day} "
                f"cannot be summarised ({why}); the rest of the day was archived"
            )
            refused.append((record, record.quarantined(reason, now)))
        if error is None:
            continue
        counts["HouseholdDaysFailed"] += 1
        deps.logger.error(
            "archiving a household-day failed; its records will be retried",
            extra={"household_id": key.household_id, "day": key.day.isoformat()},
            exc_info=error,
        )
        reason = f"{key.household_id} {key.day}: {type(error).__name__}: {error}"
        outcome.fail((contributors[piece.source].item_id for piece in pieces), reason)

    set_aside(refused, deps.quarantine.quarantine, outcome, deps.logger)
    return outcome


# ---------------------------------------------------------------------- composition root


def deps_from_environment(environment: Mapping[str, str] | None = None) -> ArchiveDeps:
    """Real adapters from the function's environment (set by the SAM template; None: ours)."""
    env = environment_or_process(environment)
    settings = settings_from(IngestSettings, env)
    aws = settings_from(AwsSettings, env)
    s3 = aws.client("s3")
    return ArchiveDeps(
        store=S3ArchiveStore(settings.archive_bucket, s3=s3),
        quarantine=S3SqsQuarantine(
            settings.archive_bucket, settings.quarantine_queue_url, s3=s3, sqs=aws.client("sqs")
        ),
        logger=logger_for(env),
        metrics=metrics_for(env),
    )


handler = LambdaEntry(
    deps_from_environment,
    batch_handler(archive_records, kinesis=True, message="archived batch"),
)
"""The template's ``ArchiveFunction`` entry point (:class:`shared.shell.LambdaEntry`)."""
