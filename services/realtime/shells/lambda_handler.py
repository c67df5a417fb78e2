"""Lambda shell of the realtime consumer: Kinesis ``readings`` -> ``forecasts``.

Per invocation (one Lambda batch, up to 500 records of many households):

1. decode every record (``shared.codec``) and keep the physically sane readings
   (``shared.validation.sanity_mask``, without the clock rule: that was ingest's call);
2. load the window states of every household of the batch (one BatchGetItem per 100);
3. run the pure step (:mod:`services.realtime.core.stream`): ONE batched model call for
   every window that completed in any household;
4. publish the forecasts (JSON ``Forecast`` documents, partition key = household, in
   time order per household) to the ``forecasts`` stream;
5. write the states back, conditionally on the stream position (never backwards).

Publishing comes before saving: if the save fails, the records are retried from the old
state and the same forecasts are published again, identical (same identity
``(household_id, issued_at)``, same content), which consumers upsert; saving first would
lose the forecasts of a failed publish. A clean redelivery (records already applied)
publishes nothing.

Failures stay per household (``batchItemFailures``): a household whose forecasts could
not be published, or whose state could not be written, fails its own records only; a
failed model call fails the households that needed it (fallback households go on); a
state table that cannot be read fails the batch (nothing can be done without states).

**Records that do not decode** are logged at error level with their coordinates and
reason, counted (``RecordsUndecodable``), and treated as handled, not failed: failing
them would block every household behind them on the shard until the records expire, and
the ``readings`` stream already has its quarantine owner: the archive consumer
quarantines every undecodable record of this stream (original bytes, reason,
coordinates). Realtime has no quarantine of its own to avoid a second copy of each
poison record (and its role has no access to the quarantine). The same holds for a record
whose partition key is not its household, and for insane readings inside a record
(``ReadingsRejected``).
"""

from __future__ import annotations

import functools
import tempfile
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from services.realtime.adapters.state_store import DynamoStateStore
from services.realtime.backends import open_model
from services.realtime.core.anomaly import AnomalyConfig
from services.realtime.core.stream import (
    Delivery as StepInput,
)
from services.realtime.core.stream import (
    ForecastDocument,
    StepResult,
    StreamConfig,
    finish,
    prepare,
)
from services.realtime.core.window import WindowState
from services.realtime.model.bundle import download_bundle, shipped_bundle_dir
from services.realtime.model.fleet_model import open_fleet_model
from services.realtime.ports import ForecastModel, StateStore
from services.realtime.settings import RealtimeSettings
from shared.settings import AwsSettings, settings_from
from shared.shell import (
    BatchOutcome,
    Delivery,
    LambdaEntry,
    ShellDeps,
    batch_handler,
    decode_readings,
    environment_or_process,
    logger_for,
    metrics_for,
    skip_refused,
)
from shared.streams.factory import StreamBusSettings, publisher_for
from shared.streams.ports import PublishError, StreamPublisher, StreamRecord
from shared.validation import DEFAULT_LIMITS, SanityLimits

__all__ = [
    "RealtimeDeps",
    "RealtimeOutcome",
    "deps_from_environment",
    "handler",
    "process_records",
]

CONSUMER: Final = "realtime"
_SHOWN: Final = 3


@dataclass(frozen=True)
class RealtimeDeps(ShellDeps):
    """The realtime consumer's ports (telemetry and clock: :class:`shared.shell.ShellDeps`)."""

    model: ForecastModel
    store: StateStore
    publisher: StreamPublisher
    config: StreamConfig | None = None  # default: StreamConfig(model.spec)
    limits: SanityLimits = DEFAULT_LIMITS

    @functools.cached_property
    def stream_config(self) -> StreamConfig:
        config = self.config or StreamConfig(self.model.spec)
        if config.spec != self.model.spec:
            raise ValueError("the stream config and the model disagree on the model spec")
        return config


@dataclass
class RealtimeOutcome(BatchOutcome):
    """The batch's outcome plus the step's result (for tests and local tools)."""

    result: StepResult | None = field(default=None)


def _decode(
    records: Sequence[Delivery], deps: RealtimeDeps, outcome: RealtimeOutcome
) -> tuple[list[StepInput], dict[str, list[str]]]:
    """Step inputs in stream order, and each household's sequence numbers."""
    inputs: list[StepInput] = []
    sequences: dict[str, list[str]] = defaultdict(list)
    for record in records:
        decoded = decode_readings(record, deps.limits)
        skip_refused(decoded, logger=deps.logger, counts=outcome.counts, consumer=CONSUMER)
        if decoded.batch is None:
            continue
        inputs.append(StepInput(decoded.batch, int(record.item_id)))
        sequences[decoded.batch.household_id].append(record.item_id)
    return inputs, sequences


def process_records(records: Sequence[Delivery], deps: RealtimeDeps) -> RealtimeOutcome:
    """Forecast one delivered batch; returns the failed records and the counters."""
    outcome = RealtimeOutcome()
    outcome.counts["Records"] = len(records)
    deliveries, sequences = _decode(records, deps, outcome)
    if not deliveries:
        return outcome
    logger, config = deps.logger, deps.stream_config
    try:
        loaded = deps.store.load(list(sequences))
    except Exception as error:  # no states, no step: the whole batch is retried
        logger.exception("loading window states failed; the batch will be retried")
        outcome.fail([s for seqs in sequences.values() for s in seqs], f"state load: {error}")
        return outcome
    for household, why in loaded.unreadable.items():
        outcome.counts["StatesUnreadable"] += 1
        logger.warning(
            "unreadable window state: starting afresh",
            extra={"household_id": household, "reason": why},
        )
    states: dict[str, WindowState | None] = dict(loaded.states)

    prepared = prepare(states, deliveries, config)
    failed_households: dict[str, str] = {}
    predictions: Any = np.empty((0, config.spec.horizon_steps, len(config.spec.quantiles)))
    try:
        if len(prepared.model_inputs):
            predictions = deps.model.predict(prepared.model_inputs)
    except Exception as error:
        logger.exception("the model call failed; households that needed it will be retried")
        predictions = None
        failed_households.update(dict.fromkeys(prepared.model_households, f"model: {error}"))
    result = finish(prepared, predictions)
    outcome.result = result

    documents = [d for d in result.documents() if d.household_id not in failed_households]
    failed_households.update(_publish(documents, deps, outcome))
    to_save = [s for h, s in result.states.items() if h not in failed_households]
    saved = deps.store.save(to_save)
    outcome.counts["StateConflicts"] += len(saved.stale)
    for household, reason in saved.failed.items():
        logger.error(
            "writing a window state failed", extra={"household_id": household, "reason": reason}
        )
        failed_households[household] = f"state save: {reason}"
    for household, reason in failed_households.items():
        outcome.fail(sequences.get(household, []), reason)
    outcome.counts["HouseholdsFailed"] = len(failed_households)
    _count(result, outcome, deps)
    return outcome


def _publish(
    documents: Sequence[ForecastDocument], deps: RealtimeDeps, outcome: RealtimeOutcome
) -> dict[str, str]:
    """Publish, returning the households whose forecasts may not all be on the stream."""
    if not documents:
        return {}
    records = [StreamRecord(d.household_id, d.data) for d in documents]
    try:
        deps.publisher.publish(records)
    except PublishError as error:
        # Requests after the failing one were not attempted: every household with
        # forecasts in this batch is retried (republished documents are identical).
        deps.logger.exception("publishing forecasts failed; their households will be retried")
        reason = f"publish: {error}"
        return dict.fromkeys((d.household_id for d in documents), reason)
    outcome.counts["ForecastsPublished"] += len(records)
    return {}


def _count(result: StepResult, outcome: RealtimeOutcome, deps: RealtimeDeps) -> None:
    stats = result.stats
    outcome.counts.update(
        {
            "DuplicateRecords": stats.duplicate_records,
            "DuplicateReadings": stats.duplicate_readings,
            "Households": stats.households,
            "ModelWindows": stats.model_windows,
            "FallbackWindows": stats.fallback_windows,
            "Forecasts": stats.forecasts,
            "Anomalies": stats.anomalies,
            "StepsWithoutForecast": stats.skipped_steps,
            "StepsSuperseded": stats.superseded_steps,
            "LateReadingsIgnored": stats.late_ignored,
            "WindowResets": len(result.resets),
        }
    )
    if result.skipped:
        by_code = Counter[str]()
        for item in result.skipped:
            by_code[item.code] += item.steps
        deps.logger.info(
            "steps without forecast",
            extra={
                "by_reason": dict(by_code),
                "examples": [
                    {"household_id": s.household_id, "reason": s.reason, "steps": s.steps}
                    for s in result.skipped[:_SHOWN]
                ],
            },
        )
    for household, why in result.resets:
        deps.logger.info("window reset", extra={"household_id": household, "reason": why})


# ---------------------------------------------------------------------- composition root


def deps_from_environment(environment: Mapping[str, str] | None = None) -> RealtimeDeps:
    """Real adapters from the function's environment (set by the SAM template; None: ours)."""
    env = environment_or_process(environment)
    settings = settings_from(RealtimeSettings, env)
    aws = settings_from(AwsSettings, env)
    bundle = settings.model_bundle
    if bundle is None and settings.model_version and settings.models_bucket:
        version = None if settings.model_version == "latest" else settings.model_version
        bundle = download_bundle(
            Path(tempfile.gettempdir()) / "wattstream-models",
            bucket=settings.models_bucket,
            s3=aws.client("s3"),
            version=version,
        )
    bundle = bundle or shipped_bundle_dir()
    model = open_model(
        settings.model_backend,
        bundle,
        endpoint_name=settings.sagemaker_endpoint_name,
        sagemaker_client=(
            aws.client("sagemaker-runtime") if settings.model_backend == "sagemaker" else None
        ),
        num_threads=settings.model_threads,
    )
    return RealtimeDeps(
        model=model,
        store=DynamoStateStore(settings.state_table, aws.client("dynamodb")),
        # the forecast consumers keep the newest issue and join steps by their target time,
        # so order within a household does not matter; packing a household's forecasts
        # into one request keeps them together in the gateway's batches (bench fleet-day)
        publisher=publisher_for(
            settings.forecasts_stream_name,
            aws,
            settings_from(StreamBusSettings, env),
            ordered=False,
        ),
        logger=logger_for(env),
        metrics=metrics_for(env),
        config=StreamConfig(
            model.spec,
            anomaly=AnomalyConfig(threshold=settings.anomaly_threshold),
            energy_model=open_fleet_model(
                settings.fleet_bundle, num_threads=settings.model_threads
            ),
        ),
    )


handler = LambdaEntry(
    deps_from_environment,
    batch_handler(process_records, kinesis=True, message="forecast batch"),
)
"""The template's ``RealtimeFunction`` entry point (:class:`shared.shell.LambdaEntry`)."""
