"""Lambda shell: Kinesis ``forecasts`` -> latest forecast and anomaly marks in the query store.

Records are JSON documents of :class:`shared.schema.Forecast`. Of a household's forecasts
in one batch only the latest is written (one conditional write: it replaces the stored
one only if issued later, so a redelivered or late older forecast changes nothing);
every anomaly flagged in the batch becomes its own item, keyed by issuing time, so a
redelivery overwrites itself. The scored steps of every forecast (its first step and its
day-ahead step, :func:`services.gateway.core.accuracy.targets_of`) are kept per target
interval, and the household's rolling accuracy is recomputed from the store. A record
that is not a valid forecast goes to the quarantine with its bytes, reason and
coordinates; a failed write fails only the records of that household. Households are
written up to ``max_workers`` at a time, like the readings consumer's household-days; the
target-day items and the accuracy inputs of the whole batch are read with batched reads
(a few round trips per batch instead of several per household).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Final

from pydantic import ValidationError

from services.gateway.core.accuracy import targets_of
from services.gateway.core.model import anomaly_of
from services.gateway.shells.consumer import (
    ConsumerDeps,
    consumer_deps_from_environment,
    note_progress,
    refresh_accuracies,
)
from shared.parallel import each
from shared.schema import Forecast, Quarantined
from shared.shell import BatchOutcome, Delivery, LambdaEntry, batch_handler, set_aside

__all__ = ["apply_forecasts", "handler"]

CONSUMER: Final = "forecasts"
#: The counters every batch emits (as EMF metrics of these names), zeros included.
COUNTERS: Final = (
    "Records",
    "ForecastsKept",
    "Anomalies",
    "AccuracyTargets",
    "AccuracyUpdates",
    "Quarantined",
)


def apply_forecasts(delivered: Sequence[Delivery], deps: ConsumerDeps) -> BatchOutcome:
    """Apply one delivered batch of forecasts to the query store."""
    outcome = BatchOutcome.counting(*COUNTERS)
    counts = outcome.counts
    counts["Records"] = len(delivered)
    now = deps.clock()
    by_household: dict[str, list[tuple[Delivery, Forecast]]] = defaultdict(list)
    refused: list[tuple[Delivery, Quarantined]] = []
    for record in delivered:
        try:
            forecast = Forecast.model_validate_json(record.data)
        except ValidationError as error:
            reason = f"not a Forecast: {error.errors(include_url=False, include_input=False)[:3]}"
            refused.append(
                (record, record.quarantined(reason, now, source=f"{record.source}:gateway"))
            )
            continue
        by_household[forecast.household_id].append((record, forecast))

    def write(household: str) -> tuple[int, int]:
        """The household's anomalies and latest forecast: (anomalies, kept)."""
        items = by_household[household]
        anomalies = 0
        for _, forecast in items:
            mark = anomaly_of(forecast)
            if mark is not None:
                deps.store.put_anomaly(mark)
                anomalies += 1
        latest = max(items, key=lambda item: item[1].issued_at)[1]
        return anomalies, int(deps.store.put_forecast(latest))

    # Households are independent: up to ``max_workers`` at a time (each is a few store
    # calls, so one at a time left the batch waiting on round trips); the targets of
    # every household are merged with batched reads, then the accuracy of the
    # households whose targets were written is recomputed, again batched.
    written = each(by_household, write, max_workers=deps.max_workers)
    targets = {h: [t for _, f in items for t in targets_of(f)] for h, items in by_household.items()}
    failed: dict[str, Exception] = deps.store.put_targets_of(
        {h: found for h, found in targets.items() if found}
    )
    failed |= {h: e for h, e in written.items() if isinstance(e, Exception) and h not in failed}
    rescored = refresh_accuracies(
        deps.store, [h for h in by_household if h not in failed], max_workers=deps.max_workers
    )
    failed |= {h: e for h, e in rescored.items() if isinstance(e, Exception)}
    for household, items in by_household.items():
        if household in failed:
            error = failed[household]
            deps.logger.error(
                "writing a forecast failed", extra={"household_id": household}, exc_info=error
            )
            reason = f"{type(error).__name__}: {error}"
            outcome.fail((record.item_id for record, _ in items), reason)
            continue
        anomalies, kept = written[household]  # type: ignore[misc]
        counts["Anomalies"] += anomalies
        counts["ForecastsKept"] += kept
        counts["AccuracyTargets"] += len(targets[household])
        counts["AccuracyUpdates"] += int(rescored[household])

    set_aside(refused, deps.quarantine.quarantine, outcome, deps.logger)

    note_progress(
        deps,
        CONSUMER,
        arrivals=[r.arrived_at for r in delivered if r.arrived_at is not None],
        events=[f.issued_at for items in by_household.values() for _, f in items],
        records=len(delivered),
    )
    return outcome


handler = LambdaEntry(
    consumer_deps_from_environment,
    batch_handler(apply_forecasts, kinesis=True, message="applied forecasts"),
)
"""The template's ``GatewayForecastsFunction`` entry point (:class:`shared.shell.LambdaEntry`)."""
