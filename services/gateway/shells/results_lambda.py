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
import functools
import json
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSEvent, SQSRecord
from pydantic import ValidationError

from services.gateway.core.model import StoredMonthly
from services.gateway.ports import ObjectMissing
from services.gateway.shells.consumer import (
    ConsumerDeps,
    LambdaHandler,
    consumer_deps_from_environment,
    emit,
    note_progress,
    refusal,
    settle,
)
from shared.schema import MonthlyForecast, Quarantined, StreamCoordinates

__all__ = ["ResultsOutcome", "apply_results", "build_handler", "handler"]

CONSUMER: Final = "results"
RESULTS_PREFIX: Final = "results/"
_TEST_EVENT: Final = "s3:TestEvent"


@dataclass
class ResultsOutcome:
    """What one batch did: failed messages (message id -> reason) and counters."""

    failed: dict[str, str] = field(default_factory=dict)
    results_kept: int = 0
    skipped: int = 0
    missing: int = 0
    quarantined: int = 0


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
    record: SQSRecord, deps: ConsumerDeps, outcome: ResultsOutcome, refused: list[Quarantined]
) -> list[dt.datetime]:
    """Index the results of one message; returns their event times."""
    now = deps.clock()
    try:
        body = json.loads(record.body)
        if isinstance(body, dict) and body.get("Event") == _TEST_EVENT:
            outcome.skipped += 1
            return []
        events = _object_events(body)
    except (ValueError, KeyError, TypeError) as error:
        refused.append(
            refusal(
                record.body.encode(),
                f"not an S3 event: {error}",
                source="sqs:results-events:gateway",
                coordinates=StreamCoordinates(
                    stream=record.event_source_arn,
                    shard_or_partition="",
                    sequence_or_offset=record.message_id,
                ),
                now=now,
            )
        )
        return []
    times: list[dt.datetime] = []
    for bucket, key, event_time in events:
        if not key.startswith(RESULTS_PREFIX) or not key.endswith(".json"):
            outcome.skipped += 1
            continue
        if deps.objects is None:
            raise RuntimeError("the results consumer needs an ObjectReader")
        try:
            data = deps.objects.read(bucket, key)
        except ObjectMissing:
            deps.logger.warning("result object is gone; nothing to index", extra={"key": key})
            outcome.missing += 1
            continue
        try:
            forecast = MonthlyForecast.model_validate_json(data)
        except ValidationError as error:
            errors = error.errors(include_url=False, include_input=False)[:3]
            refused.append(
                refusal(
                    data,
                    f"not a MonthlyForecast: {errors}",
                    source=f"s3:{bucket}:gateway",
                    coordinates=_coordinates(bucket, key, record.message_id),
                    now=now,
                )
            )
            continue
        outcome.results_kept += int(
            deps.store.put_monthly(StoredMonthly(forecast=forecast, bucket=bucket, key=key))
        )
        if event_time:
            times.append(dt.datetime.fromisoformat(event_time.replace("Z", "+00:00")))
    return times


def apply_results(records: list[SQSRecord], deps: ConsumerDeps) -> ResultsOutcome:
    """Index one delivered batch of S3 events; a failing message fails alone."""
    outcome = ResultsOutcome()
    event_times: list[dt.datetime] = []
    arrivals: list[dt.datetime] = []
    for record in records:
        refused: list[Quarantined] = []
        try:
            event_times += _apply_message(record, deps, outcome, refused)
            if refused:
                deps.quarantine.quarantine(refused)
                outcome.quarantined += len(refused)
        except Exception as error:  # this message is retried, then dead-lettered
            deps.logger.exception("indexing a result failed", extra={"id": record.message_id})
            outcome.failed[record.message_id] = f"{type(error).__name__}: {error}"
            continue
        sent = record.attributes.sent_timestamp
        if sent:
            arrivals.append(dt.datetime.fromtimestamp(int(sent) / 1000, dt.UTC))
    note_progress(deps, CONSUMER, arrivals=arrivals, events=event_times, records=len(records))
    return outcome


def build_handler(deps: ConsumerDeps) -> LambdaHandler:
    """The Lambda handler over ``deps`` (the composition root calls this once)."""

    @deps.metrics.log_metrics
    @deps.logger.inject_lambda_context
    def results_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        records = list(SQSEvent(event).records)
        outcome = apply_results(records, deps)
        emit(
            deps,
            "indexed monthly results",
            {
                "Messages": len(records),
                "ResultsKept": outcome.results_kept,
                "ObjectsSkipped": outcome.skipped,
                "ObjectsMissing": outcome.missing,
                "Quarantined": outcome.quarantined,
                "MessagesFailed": len(outcome.failed),
            },
        )
        return settle(event, context, outcome.failed, kinesis=False)

    return results_handler


@functools.cache
def _default_handler() -> LambdaHandler:
    return build_handler(consumer_deps_from_environment(with_objects=True))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The template's ``GatewayResultsFunction`` entry point; built on first use."""
    return _default_handler()(event, context)
