"""Lambda shell: S3 events of the models bucket's ``results/`` (via SQS) -> monthly items.

The monthly service writes a :class:`shared.schema.MonthlyForecast` JSON document and
its plots under ``results/``; the gateway relies on nothing else of the key layout.
Every created ``.json`` object is read, validated and kept as the household-month's
result unless a result of a later ``as_of`` is stored (a redelivered event rewrites the
same item: idempotent). Other objects (the plots) are skipped and counted: the result
names its plots in ``plot_keys``.

A document that is not a valid ``MonthlyForecast``, or a message that is not an S3 event,
goes to the quarantine with the bytes, the reason and its bucket and key. An object that
no longer exists is logged and counted (nothing left to index). A failed write fails the
message, which SQS redelivers and finally dead-letters.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import unquote_plus

from pydantic import ValidationError

from services.gateway.core.model import StoredMonthly
from services.gateway.ports import ObjectMissing
from services.gateway.shells.consumer import (
    ConsumerDeps,
    consumer_deps_from_environment,
    note_progress,
)
from shared.schema import MonthlyForecast, Quarantined, StreamCoordinates
from shared.shell import BatchOutcome, Delivery, Environment, LambdaEntry, batch_handler

__all__ = ["apply_results", "deps_from_environment", "handler"]

CONSUMER: Final = "results"
RESULTS_PREFIX: Final = "results/"
_TEST_EVENT: Final = "s3:TestEvent"
#: The counters every batch emits (as EMF metrics of these names), zeros included.
COUNTERS: Final = ("Messages", "ResultsKept", "ObjectsSkipped", "ObjectsMissing", "Quarantined")


def _object_events(body: Any) -> list[tuple[str, str, str | None]]:
    """``(bucket, key, event time)`` of each ObjectCreated record (keys URL-decoded)."""
    if not isinstance(body, dict) or not isinstance(body.get("Records"), list):
        raise ValueError("not an S3 event notification")
    return [
        (
            record["s3"]["bucket"]["name"],
            unquote_plus(record["s3"]["object"]["key"]),
            record.get("eventTime"),
        )
        for record in body["Records"]
        if str(record.get("eventName", "")).startswith("ObjectCreated:")
    ]


def _coordinates(bucket: str, key: str, message_id: str) -> StreamCoordinates:
    return StreamCoordinates(
        stream=f"s3://{bucket}", shard_or_partition=key, sequence_or_offset=message_id
    )


def _apply_message(
    record: Delivery, deps: ConsumerDeps, outcome: BatchOutcome, refused: list[Quarantined]
) -> list[dt.datetime]:
    """Index the results of one message; returns their event times."""
    now = deps.clock()
    counts = outcome.counts
    try:
        body = json.loads(record.data)
        if isinstance(body, dict) and body.get("Event") == _TEST_EVENT:
            counts["ObjectsSkipped"] += 1
            return []
        events = _object_events(body)
    except (ValueError, KeyError, TypeError) as error:
        reason = f"not an S3 event: {error}"
        refused.append(record.quarantined(reason, now, source=f"{record.source}:gateway"))
        return []
    times: list[dt.datetime] = []
    for bucket, key, event_time in events:
        if not key.startswith(RESULTS_PREFIX) or not key.endswith(".json"):
            counts["ObjectsSkipped"] += 1
            continue
        if deps.objects is None:
            raise RuntimeError("the results consumer needs an ObjectReader")
        try:
            data = deps.objects.read(bucket, key)
        except ObjectMissing:
            deps.logger.warning("result object is gone; nothing to index", extra={"key": key})
            counts["ObjectsMissing"] += 1
            continue
        try:
            forecast = MonthlyForecast.model_validate_json(data)
        except ValidationError as error:
            errors = error.errors(include_url=False, include_input=False)[:3]
            refused.append(
                Quarantined(
                    original=data,
                    reason=f"not a MonthlyForecast: {errors}"[:4000],
                    source=f"s3:{bucket}:gateway",
                    coordinates=_coordinates(bucket, key, record.item_id),
                    quarantined_at=now,
                )
            )
            continue
        counts["ResultsKept"] += int(
            deps.store.put_monthly(StoredMonthly(forecast=forecast, bucket=bucket, key=key))
        )
        if event_time:
            times.append(dt.datetime.fromisoformat(event_time.replace("Z", "+00:00")))
    return times


def apply_results(records: Sequence[Delivery], deps: ConsumerDeps) -> BatchOutcome:
    """Index one delivered batch of S3 events; a failing message fails alone."""
    outcome = BatchOutcome.counting(*COUNTERS)
    outcome.counts["Messages"] = len(records)
    event_times: list[dt.datetime] = []
    arrivals: list[dt.datetime] = []
    for record in records:
        refused: list[Quarantined] = []
        try:
            event_times += _apply_message(record, deps, outcome, refused)
            if refused:
                deps.quarantine.quarantine(refused)
                outcome.counts["Quarantined"] += len(refused)
        except Exception as error:  # this message is retried, then dead-lettered
            deps.logger.exception("indexing a result failed", extra={"id": record.item_id})
            outcome.failed[record.item_id] = f"{type(error).__name__}: {error}"
            continue
        if record.arrived_at is not None:
            arrivals.append(record.arrived_at)
    note_progress(deps, CONSUMER, arrivals=arrivals, events=event_times, records=len(records))
    return outcome


def deps_from_environment(environment: Environment | None = None) -> ConsumerDeps:
    """The consumer deps with an object reader (it reads the result objects)."""
    return consumer_deps_from_environment(environment, with_objects=True)


handler = LambdaEntry(
    deps_from_environment,
    batch_handler(
        apply_results,
        kinesis=False,
        message="indexed monthly results",
        failed_metric="MessagesFailed",
    ),
)
"""The template's ``GatewayResultsFunction`` entry point (:class:`shared.shell.LambdaEntry`)."""
