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

import functools
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
    KinesisStreamEvent,
    KinesisStreamRecord,
)
from pydantic import ValidationError

from services.gateway.core.accuracy import targets_of
from services.gateway.core.model import anomaly_of
from services.gateway.shells.consumer import (
    ConsumerDeps,
    Delivered,
    LambdaHandler,
    consumer_deps_from_environment,
    emit,
    note_progress,
    refresh_accuracy,
    refusal,
    settle,
)
from shared.schema import Forecast, Quarantined

__all__ = ["ForecastsOutcome", "apply_forecasts", "build_handler", "handler"]

CONSUMER: Final = "forecasts"


@dataclass
class ForecastsOutcome:
    """What one batch did: failed records (sequence number -> reason) and counters."""

    failed: dict[str, str] = field(default_factory=dict)
    forecasts_kept: int = 0
    anomalies: int = 0
    targets: int = 0
    accuracy_updates: int = 0
    quarantined: int = 0


def apply_forecasts(records: Sequence[KinesisStreamRecord], deps: ConsumerDeps) -> ForecastsOutcome:
    """Apply one delivered batch of forecasts to the query store."""
    outcome = ForecastsOutcome()
    now = deps.clock()
    delivered = [Delivered.of(record) for record in records]
    by_household: dict[str, list[tuple[Delivered, Forecast]]] = defaultdict(list)
    refused: list[tuple[Delivered, Quarantined]] = []
    for record in delivered:
        try:
            forecast = Forecast.model_validate_json(record.data)
        except ValidationError as error:
            reason = f"not a Forecast: {error.errors(include_url=False, include_input=False)[:3]}"
            refused.append(
                (
                    record,
                    refusal(
                        record.data,
                        reason,
                        source=f"kinesis:{record.stream}:gateway",
                        coordinates=record.coordinates,
                        now=now,
                    ),
                )
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
                "writing a forecast failed",
                extra={"household_id": household},
                exc_info=result,
            )
            for record, _ in by_household[household]:
                outcome.failed.setdefault(record.sequence, f"{type(result).__name__}: {result}")
            continue
        outcome.anomalies += result[0]
        outcome.targets += result[1]
        outcome.forecasts_kept += result[2]
        outcome.accuracy_updates += result[3]

    if refused:
        try:
            deps.quarantine.quarantine([item for _, item in refused])
            outcome.quarantined = len(refused)
        except Exception as error:  # retried, never dropped
            deps.logger.exception("quarantine failed; the refused records will be retried")
            for record, _ in refused:
                outcome.failed.setdefault(record.sequence, f"quarantine failed: {error}")

    note_progress(
        deps,
        CONSUMER,
        arrivals=[r.arrived_at for r in delivered],
        events=[f.issued_at for items in by_household.values() for _, f in items],
        records=len(delivered),
    )
    return outcome


def build_handler(deps: ConsumerDeps) -> LambdaHandler:
    """The Lambda handler over ``deps`` (the composition root calls this once)."""

    @deps.metrics.log_metrics
    @deps.logger.inject_lambda_context
    def forecasts_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        records = list(KinesisStreamEvent(event).records)
        outcome = apply_forecasts(records, deps)
        emit(
            deps,
            "applied forecasts",
            {
                "Records": len(records),
                "ForecastsKept": outcome.forecasts_kept,
                "Anomalies": outcome.anomalies,
                "AccuracyTargets": outcome.targets,
                "AccuracyUpdates": outcome.accuracy_updates,
                "Quarantined": outcome.quarantined,
                "RecordsFailed": len(outcome.failed),
            },
        )
        return settle(event, context, outcome.failed, kinesis=True)

    return forecasts_handler


@functools.cache
def _default_handler() -> LambdaHandler:
    return build_handler(consumer_deps_from_environment())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The template's ``GatewayForecastsFunction`` entry point; built on first use."""
    return _default_handler()(event, context)
