"""What the gateway's three consumer shells share besides :mod:`shared.shell`.

The deps of the query-store builders, their progress bookkeeping for
``/health/pipeline``, and the accuracy refresh both the readings and the forecasts
consumers run after their writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_lambda_powertools.metrics import MetricUnit

from services.gateway.core.accuracy import accuracy_days, household_accuracy
from services.gateway.core.model import ConsumerProgress
from services.gateway.ports import GatewayStore, ObjectReader, QuarantineSink
from shared.parallel import each
from shared.shell import ShellDeps, environment_or_process, logger_for, metrics_for

__all__ = [
    "ConsumerDeps",
    "consumer_deps_from_environment",
    "note_progress",
    "refresh_accuracies",
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
    """:func:`refresh_accuracies` of one household; its failure is raised."""
    result = refresh_accuracies(store, [household_id])[household_id]
    if isinstance(result, Exception):
        raise result
    return result


def refresh_accuracies(
    store: GatewayStore, household_ids: Sequence[str], *, max_workers: int = 8
) -> dict[str, bool | Exception]:
    """Recompute the households' rolling accuracy from what is stored: per household,
    True if written, or the exception that failed it (the others go on).

    Called after a batch's writes of the households (their minutes or their forecast
    targets) by both consumers: each ticket is taken after those writes and the inputs
    are read after every ticket, so the newest ticket's result saw every input, and an
    older ticket's result is refused by the store. Nothing is accumulated, so a
    redelivered batch recomputes the same numbers. The inputs of all the households
    are read together (two batched reads: the index rows, then their days and targets):
    one read per household and input was most of the consumers' round trips.
    """
    results: dict[str, bool | Exception] = {}
    tickets: dict[str, int] = {}
    for household_id, ticket in each(
        household_ids, store.accuracy_ticket, max_workers=max_workers
    ).items():
        if isinstance(ticket, Exception):
            results[household_id] = ticket
        else:
            tickets[household_id] = ticket
    if not tickets:
        return results
    try:
        index = store.households_of(list(tickets))
        wanted = {
            household_id: accuracy_days(summary.last_reading_at)
            for household_id, summary in index.items()
            if summary.last_reading_at is not None
        }
        inputs = store.accuracy_inputs(wanted) if wanted else {}
    except Exception as error:  # nothing read: every household is retried
        return results | {household_id: error for household_id in tickets}
    # No actual yet: nothing to score.
    results.update({household_id: False for household_id in tickets if household_id not in wanted})

    def keep(household_id: str) -> bool:
        days, targets = inputs[household_id]
        result = household_accuracy(household_id, targets, days)
        return result is not None and store.put_accuracy(result, tickets[household_id])

    return results | each(wanted, keep, max_workers=max_workers)


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
