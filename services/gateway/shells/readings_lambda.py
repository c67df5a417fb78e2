"""Lambda shell: Kinesis ``readings`` -> household-day consumption items in the query store.

The batch is handled as a whole: every record is decoded, its readings turned into
per-minute power by the pure core, and all updates of one household-day (from any number
of records, in arrival order) are merged in ONE read-merge-conditional-write, up to
``max_workers`` household-days at a time. Redelivery is harmless: the same minutes get
the same values, the core reports "unchanged", and nothing is written.

Failures stay narrow: a household-day whose write fails fails only the records that
contributed to it.

**Records that do not decode**, or readings that break the shared physical rules, are
logged at error level with their coordinates and reason, counted (``RecordsUndecodable``,
``ReadingsRejected``), and skipped (the sane readings of a record are still applied). They
are not quarantined here: the ``readings`` stream has one quarantine owner, the archive
consumer, which keeps the original bytes, the reason and the coordinates of every such
record. A second copy per poison record would double the quarantine (the realtime consumer
follows the same rule).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
    KinesisStreamEvent,
    KinesisStreamRecord,
)

from services.gateway.core.consumption import (
    DayKey,
    MinuteUpdate,
    combine_updates,
    minute_updates,
)
from services.gateway.shells.consumer import (
    ConsumerDeps,
    Delivered,
    LambdaHandler,
    consumer_deps_from_environment,
    emit,
    note_progress,
    refresh_accuracy,
    settle,
)
from shared.batch import MAX_TIMESTAMP_US, ReadingBatch, us_to_datetime
from shared.codec import CodecError, decode_record
from shared.validation import DEFAULT_LIMITS, sanity_mask

__all__ = ["ReadingsOutcome", "apply_readings", "build_handler", "handler"]

CONSUMER: Final = "readings"
_SHOWN_REJECTIONS: Final = 3


@dataclass
class ReadingsOutcome:
    """What one batch did: failed records (sequence number -> reason) and counters."""

    failed: dict[str, str] = field(default_factory=dict)
    household_days: int = 0
    items_written: int = 0
    accuracy_updates: int = 0
    undecodable: int = 0
    readings_rejected: int = 0


def _decode(record: Delivered, deps: ConsumerDeps, outcome: ReadingsOutcome) -> ReadingBatch | None:
    """The sane readings of a record; what is refused is logged and counted, not quarantined."""
    where = {**record.coordinates.model_dump(mode="json"), "consumer": CONSUMER}
    try:
        batch = decode_record(record.data)
    except CodecError as error:
        outcome.undecodable += 1
        deps.logger.error(
            "undecodable record skipped (quarantined by the archive consumer)",
            extra={**where, "reason": f"{error.code}: {error.reason}"},
        )
        return None
    # The clock rule was ingest's, at publish time: only the physical rules apply here.
    ok, rejected = sanity_mask(batch, now_us=MAX_TIMESTAMP_US, limits=DEFAULT_LIMITS)
    if not rejected:
        return batch
    outcome.readings_rejected += len(rejected)
    deps.logger.warning(
        "insane readings skipped (quarantined by the archive consumer)",
        extra={
            **where,
            "rejected": len(rejected),
            "examples": [f"row {row}: {r.code}" for row, r in rejected[:_SHOWN_REJECTIONS]],
        },
    )
    return batch.take(ok)


def apply_readings(records: Sequence[KinesisStreamRecord], deps: ConsumerDeps) -> ReadingsOutcome:
    """Apply one delivered batch to the query store."""
    outcome = ReadingsOutcome()
    delivered = [Delivered.of(record) for record in records]
    updates: dict[DayKey, list[MinuteUpdate]] = defaultdict(list)
    contributors: dict[DayKey, list[str]] = defaultdict(list)
    latest: dict[str, int] = {}
    household_records: dict[str, list[str]] = defaultdict(list)
    for record in delivered:
        batch = _decode(record, deps, outcome)
        if batch is None or not len(batch):
            continue
        for key, update in minute_updates(batch).items():
            updates[key].append(update)
            contributors[key].append(record.sequence)
        household = batch.household_id
        latest[household] = max(latest.get(household, 0), int(np.max(batch.timestamps_us)))
        household_records[household].append(record.sequence)

    def write(key: DayKey) -> bool | Exception:
        try:
            return deps.store.merge_day(key, combine_updates(updates[key]))
        except Exception as error:  # one household-day fails, not the batch
            return error

    keys = list(updates)
    with ThreadPoolExecutor(max_workers=max(1, min(deps.max_workers, len(keys)))) as pool:
        results = list(pool.map(write, keys))
    for key, result in zip(keys, results, strict=True):
        outcome.household_days += 1
        if isinstance(result, Exception):
            deps.logger.error(
                "writing a household-day failed; its records will be retried",
                extra={"household_id": key.household_id, "day": key.day.isoformat()},
                exc_info=result,
            )
            for sequence in contributors[key]:
                outcome.failed.setdefault(sequence, f"{key}: {type(result).__name__}: {result}")
        elif result:
            outcome.items_written += 1

    for household, stamp in latest.items():
        try:
            deps.store.note_household(household, us_to_datetime(stamp))
        except Exception as error:
            deps.logger.exception("indexing a household failed", extra={"household_id": household})
            for sequence in household_records[household]:
                outcome.failed.setdefault(sequence, f"households index: {error}")

    # Accuracy of the households written in full (a failed one is retried as a whole).
    scored = [h for h, seqs in household_records.items() if not outcome.failed.keys() & set(seqs)]

    def rescore(household: str) -> bool | Exception:
        try:
            return refresh_accuracy(deps.store, household)
        except Exception as error:  # this household's records are retried
            return error

    with ThreadPoolExecutor(max_workers=max(1, min(deps.max_workers, len(scored)))) as pool:
        rescored = list(pool.map(rescore, scored))
    for household, result in zip(scored, rescored, strict=True):
        if isinstance(result, Exception):
            deps.logger.error(
                "recomputing the forecast accuracy failed; its records will be retried",
                extra={"household_id": household},
                exc_info=result,
            )
            for sequence in household_records[household]:
                outcome.failed.setdefault(sequence, f"accuracy: {type(result).__name__}: {result}")
        else:
            outcome.accuracy_updates += int(result)

    note_progress(
        deps,
        CONSUMER,
        arrivals=[r.arrived_at for r in delivered],
        events=[us_to_datetime(stamp) for stamp in latest.values()],
        records=len(delivered),
    )
    return outcome


def build_handler(deps: ConsumerDeps) -> LambdaHandler:
    """The Lambda handler over ``deps`` (the composition root calls this once)."""

    @deps.metrics.log_metrics
    @deps.logger.inject_lambda_context
    def readings_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        records = list(KinesisStreamEvent(event).records)
        outcome = apply_readings(records, deps)
        emit(
            deps,
            "applied readings",
            {
                "Records": len(records),
                "HouseholdDays": outcome.household_days,
                "ItemsWritten": outcome.items_written,
                "AccuracyUpdates": outcome.accuracy_updates,
                "RecordsUndecodable": outcome.undecodable,
                "ReadingsRejected": outcome.readings_rejected,
                "RecordsFailed": len(outcome.failed),
            },
        )
        return settle(event, context, outcome.failed, kinesis=True)

    return readings_handler


@functools.cache
def _default_handler() -> LambdaHandler:
    return build_handler(consumer_deps_from_environment())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The template's ``GatewayReadingsFunction`` entry point; built on first use."""
    return _default_handler()(event, context)
