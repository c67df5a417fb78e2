"""Lambda shell: Kinesis ``readings`` -> household-day consumption items in the query store.

The batch is handled as a whole: every record is decoded, its readings turned into
per-minute power by the pure core, and all updates of one household-day (from any number
of records, in arrival order) are merged in ONE read-merge-conditional-write (the batch's
reads batched), up to ``max_workers`` household-days at a time. Redelivery is harmless:
the same minutes get the same values, the core reports "unchanged", and nothing is
written.

Failures stay narrow: a household-day whose write fails fails only the records that
contributed to it.

**Records that do not decode**, records under another household's partition key, and
readings that break the shared physical rules (:func:`shared.shell.decode_readings`, the
one readings decoder) are logged with their coordinates and reason, counted
(``RecordsUndecodable``, ``ReadingsRejected``), and skipped (the sane readings of a record
are still applied). They
are not quarantined here: the ``readings`` stream has one quarantine owner, the archive
consumer, which keeps the original bytes, the reason and the coordinates of every such
record. A second copy per poison record would double the quarantine (the realtime consumer
follows the same rule).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Final

import numpy as np

from services.gateway.core.consumption import (
    DayKey,
    MinuteUpdate,
    combine_updates,
    minute_updates,
)
from services.gateway.shells.consumer import (
    ConsumerDeps,
    consumer_deps_from_environment,
    note_progress,
    refresh_accuracies,
)
from shared.batch import us_to_datetime
from shared.parallel import each
from shared.shell import (
    BatchOutcome,
    Delivery,
    LambdaEntry,
    batch_handler,
    decode_readings,
    skip_refused,
)

__all__ = ["apply_readings", "handler"]

CONSUMER: Final = "readings"
#: The counters every batch emits (as EMF metrics of these names), zeros included.
COUNTERS: Final = (
    "Records",
    "HouseholdDays",
    "ItemsWritten",
    "AccuracyUpdates",
    "RecordsUndecodable",
    "ReadingsRejected",
)


def apply_readings(delivered: Sequence[Delivery], deps: ConsumerDeps) -> BatchOutcome:
    """Apply one delivered batch to the query store."""
    outcome = BatchOutcome.counting(*COUNTERS)
    counts = outcome.counts
    counts["Records"] = len(delivered)
    updates: dict[DayKey, list[MinuteUpdate]] = defaultdict(list)
    contributors: dict[DayKey, list[str]] = defaultdict(list)
    latest: dict[str, int] = {}
    household_records: dict[str, list[str]] = defaultdict(list)
    for record in delivered:
        decoded = decode_readings(record)
        skip_refused(decoded, logger=deps.logger, counts=counts, consumer=CONSUMER)
        batch = decoded.batch
        if batch is None or not len(batch):
            continue
        for key, update in minute_updates(batch).items():
            updates[key].append(update)
            contributors[key].append(record.item_id)
        household = batch.household_id
        latest[household] = max(latest.get(household, 0), int(np.max(batch.timestamps_us)))
        household_records[household].append(record.item_id)

    merged = deps.store.merge_days({key: combine_updates(found) for key, found in updates.items()})
    for key, result in merged.items():
        counts["HouseholdDays"] += 1
        if isinstance(result, Exception):
            deps.logger.error(
                "writing a household-day failed; its records will be retried",
                extra={"household_id": key.household_id, "day": key.day.isoformat()},
                exc_info=result,
            )
            outcome.fail(contributors[key], f"{key}: {type(result).__name__}: {result}")
        elif result:
            counts["ItemsWritten"] += 1

    indexed = each(
        latest,
        lambda household: deps.store.note_household(household, us_to_datetime(latest[household])),
        max_workers=deps.max_workers,
    )
    for household, error in indexed.items():
        if isinstance(error, Exception):
            deps.logger.error(
                "indexing a household failed", extra={"household_id": household}, exc_info=error
            )
            outcome.fail(household_records[household], f"households index: {error}")

    # Accuracy of the households written in full (a failed one is retried as a whole).
    scored = [h for h, seqs in household_records.items() if not outcome.failed.keys() & set(seqs)]
    rescored = refresh_accuracies(deps.store, scored, max_workers=deps.max_workers)
    for household, result in rescored.items():
        if isinstance(result, Exception):
            deps.logger.error(
                "recomputing the forecast accuracy failed; its records will be retried",
                extra={"household_id": household},
                exc_info=result,
            )
            outcome.fail(
                household_records[household], f"accuracy: {type(result).__name__}: {result}"
            )
        else:
            counts["AccuracyUpdates"] += int(result)

    note_progress(
        deps,
        CONSUMER,
        arrivals=[r.arrived_at for r in delivered if r.arrived_at is not None],
        events=[us_to_datetime(stamp) for stamp in latest.values()],
        records=len(delivered),
    )
    return outcome


handler = LambdaEntry(
    consumer_deps_from_environment,
    batch_handler(apply_readings, kinesis=True, message="applied readings"),
)
"""The template's ``GatewayReadingsFunction`` entry point (:class:`shared.shell.LambdaEntry`)."""
