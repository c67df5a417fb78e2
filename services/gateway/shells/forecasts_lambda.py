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
written up to ``max_workers`` at a time, like the readings consumer's household-days.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from pydantic import ValidationError

from services.gateway.core.accuracy import targets_of
from services.gateway.core.model import anomaly_of
from services.gateway.shells.consumer import (
    ConsumerDeps,
    consumer_deps_from_environment,
    note_progress,
    refresh_accuracy,
)
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

    def write(household: str) -> tuple[int, int, int, int] | Exception:
        """The household's anomalies, targets, latest forecast and accuracy; its own
        failure, returned (not raised), fails only its records."""
        items = by_household[household]
        latest = max(items, key=lambda item: item[1].issued_at)[1]
        try:
            anomalies = 0
            for _, forecast in items:
                mark = anomaly_of(forecast)
                if mark is not None:
                    deps.store.put_anomaly(mark)
                    anomalies += 1
            targets = [t for _, forecast in items for t in targets_of(forecast)]
            if targets:
                deps.store.put_targets(household, targets)
            kept = int(deps.store.put_forecast(latest))
            rescored = int(refresh_accuracy(deps.store, household))
        except Exception as error:  # this household's records are retried
            return error
        return anomalies, len(targets), kept, rescored

    # Households are independent: up to ``max_workers`` at a time (each is a few
    # sequential store calls, so one at a time left the batch waiting on round trips).
    households = list(by_household)
    with ThreadPoolExecutor(max_workers=max(1, min(deps.max_workers, len(households)))) as pool:
        results = list(pool.map(write, households))
    for household, result in zip(households, results, strict=True):
        if isinstance(result, Exception):
            deps.logger.error(
                "writing a forecast failed", extra={"household_id": household}, exc_info=result
            )
            outcome.fail(
                (record.item_id for record, _ in by_household[household]),
                f"{type(result).__name__}: {result}",
            )
            continue
        counts["Anomalies"] += result[0]
        counts["AccuracyTargets"] += result[1]
        counts["ForecastsKept"] += result[2]
        counts["AccuracyUpdates"] += result[3]

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
