"""What the gateway's three consumer shells share besides :mod:`shared.shell`.

The deps of the query-store builders, their progress bookkeeping for
``/health/pipeline``, and the accuracy refresh both the readings and the forecasts
consumers run after their writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from aws_lambda_powertools.metrics import MetricUnit

from services.gateway.core.accuracy import accuracy_days, household_accuracy
from services.gateway.core.model import ConsumerProgress
from services.gateway.ports import GatewayStore, ObjectReader, QuarantineSink
from shared.shell import ShellDeps, environment_or_process, logger_for, metrics_for

__all__ = [
    "ConsumerDeps",
    "consumer_deps_from_environment",
    "note_progress",
    "refresh_accuracy",
]


@dataclass(frozen=True)
class ConsumerDeps(ShellDeps):
    """A consumer's ports (telemetry and clock: :class:`shared.shell.ShellDeps`).

    ``objects`` is only used by the results consumer (it reads the result objects).
    """

    store: GatewayStore
    quarantine: QuarantineSink
    objects: ObjectReader | None = None
    max_workers: int = 8


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


def consumer_deps_from_environment(
    environment: Mapping[str, str] | None = None, *, with_objects: bool = False
) -> ConsumerDeps:
    """Real adapters from the function's environment (set by the SAM template; None: ours)."""
    from services.gateway.adapters.aws import S3Objects
    from services.gateway.adapters.dynamo_store import DynamoGatewayStore
    from services.gateway.settings import GatewayConsumerSettings
    from shared.quarantine import SqsQuarantine
    from shared.settings import AwsSettings, settings_from

    env = environment_or_process(environment)
    settings = settings_from(GatewayConsumerSettings, env)
    aws = settings_from(AwsSettings, env)
    return ConsumerDeps(
        store=DynamoGatewayStore(settings.gateway_table, client=aws.client("dynamodb")),
        quarantine=SqsQuarantine(settings.quarantine_queue_url, sqs=aws.client("sqs")),
        logger=logger_for(env),
        metrics=metrics_for(env),
        objects=S3Objects(s3=aws.client("s3")) if with_objects else None,
    )
