"""What the gateway's three consumer shells share: dependencies, coordinates, settling.

Each consumer works on a delivered batch as a whole (so a household's records are merged
into one write per item) and returns which records failed and why;
:func:`shared.lambda_batch.settle` (re-exported here) turns that into Lambda's partial
batch response, so a failed record is retried and never acknowledged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
    KinesisStreamRecord,
)

from services.gateway.core.accuracy import accuracy_days, household_accuracy
from services.gateway.core.model import ConsumerProgress
from services.gateway.ports import GatewayStore, ObjectReader, QuarantineSink
from shared.lambda_batch import RecordFailed, settle
from shared.schema import Quarantined, StreamCoordinates

__all__ = [
    "ConsumerDeps",
    "Delivered",
    "LambdaHandler",
    "RecordFailed",
    "consumer_deps_from_environment",
    "emit",
    "note_progress",
    "refresh_accuracy",
    "refusal",
    "settle",
]

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class ConsumerDeps:
    """Everything a consumer talks to; built once per Lambda sandbox (or by a test).

    ``objects`` is only used by the results consumer (it reads the result objects).
    """

    store: GatewayStore
    quarantine: QuarantineSink
    logger: Logger
    metrics: Metrics
    objects: ObjectReader | None = None
    clock: Callable[[], dt.datetime] = _utc_now
    max_workers: int = 8


@dataclass(frozen=True)
class Delivered:
    """One Kinesis record as delivered: bytes, coordinates and arrival time."""

    data: bytes
    stream: str
    coordinates: StreamCoordinates
    arrived_at: dt.datetime

    @classmethod
    def of(cls, record: KinesisStreamRecord) -> Delivered:
        stream = record.event_source_arn.rsplit("/", 1)[-1]
        return cls(
            data=record.kinesis.data_as_bytes(),
            stream=stream,
            coordinates=StreamCoordinates(
                stream=stream,
                shard_or_partition=record.event_id.partition(":")[0],
                sequence_or_offset=record.kinesis.sequence_number,
                partition_key=record.kinesis.partition_key,
            ),
            arrived_at=dt.datetime.fromtimestamp(
                float(record.kinesis.approximate_arrival_timestamp), dt.UTC
            ),
        )

    @property
    def sequence(self) -> str:
        return self.coordinates.sequence_or_offset


def refusal(
    original: bytes,
    reason: str,
    *,
    source: str,
    coordinates: StreamCoordinates | None,
    now: dt.datetime,
) -> Quarantined:
    return Quarantined(
        original=original,
        reason=reason[:4000],
        source=source,
        coordinates=coordinates,
        quarantined_at=now,
    )


def note_progress(
    deps: ConsumerDeps,
    consumer: str,
    *,
    arrivals: list[dt.datetime],
    events: list[dt.datetime],
    records: int,
) -> None:
    """Record the consumer's progress for ``/health/pipeline``; a failure is only logged.

    Health bookkeeping must not hold data back: the batch's real writes have succeeded.
    """
    if not arrivals:
        return
    try:
        deps.store.record_progress(
            ConsumerProgress(
                consumer=consumer,
                last_arrival_at=max(arrivals),
                last_event_at=max(events) if events else None,
                processed_at=deps.clock(),
                records=records,
            )
        )
    except Exception:  # logged and counted, never fails the batch
        deps.logger.exception("recording consumer progress failed", extra={"consumer": consumer})
        deps.metrics.add_metric(name="ProgressWriteFailures", unit=MetricUnit.Count, value=1)


def refresh_accuracy(store: GatewayStore, household_id: str) -> bool:
    """Recompute a household's rolling accuracy from what is stored; True if written.

    Called after a batch's writes of the household (its minutes or its forecast targets)
    by both consumers: the ticket is taken after those writes and the inputs are read
    after the ticket, so the newest ticket's result saw every input, and an older
    ticket's result is refused by the store. Nothing is accumulated, so a redelivered
    batch recomputes the same numbers.
    """
    ticket = store.accuracy_ticket(household_id)
    indexed = store.household(household_id)
    if indexed is None or indexed.last_reading_at is None:
        return False  # no actual yet: nothing to score
    minute_days, target_days = accuracy_days(indexed.last_reading_at)
    days = store.days(household_id, minute_days, consistent=True)
    result = household_accuracy(household_id, store.targets(household_id, target_days), days)
    return result is not None and store.put_accuracy(result, ticket)


def emit(deps: ConsumerDeps, message: str, counts: Mapping[str, int]) -> None:
    """The batch's counters as EMF metrics and one log line."""
    for name, value in counts.items():
        deps.metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    deps.logger.info(message, extra=dict(counts))


def consumer_deps_from_environment(*, with_objects: bool = False) -> ConsumerDeps:
    """Real adapters from the function's environment (set by the SAM template)."""
    from services.gateway.adapters.aws import S3Objects
    from services.gateway.adapters.dynamo_store import DynamoGatewayStore
    from services.gateway.settings import GatewayConsumerSettings
    from shared.quarantine import SqsQuarantine
    from shared.settings import AwsSettings

    settings = GatewayConsumerSettings()  # type: ignore[call-arg]  # from the environment
    aws = AwsSettings()
    return ConsumerDeps(
        store=DynamoGatewayStore(settings.gateway_table, client=aws.client("dynamodb")),
        quarantine=SqsQuarantine(settings.quarantine_queue_url, sqs=aws.client("sqs")),
        logger=Logger(),
        metrics=Metrics(),
        objects=S3Objects(s3=aws.client("s3")) if with_objects else None,
    )
