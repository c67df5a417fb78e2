"""Lambda entry point of the monthly service: archive summary events -> rest-of-month forecasts.

The archive bucket sends ``ObjectCreated`` events for ``summaries/`` to a queue; this
function gets up to 50 messages per call (5 s window, ``ReportBatchItemFailures``). The
whole batch is decoded first and its events are grouped **by household**, because an
event only means "this household's history changed" (see
:mod:`services.monthly.core.debounce` for the full debouncing rule): ten events of one
household in a batch cost one forecast, not ten.

Per household (:func:`forecast_household`):

1. list its summaries (key + ETag) and read only those whose ETag is not in the
   household's summaries cache (a live household: one or two GETs);
2. plan: the newest final day is the as-of day; the input fingerprint of that forecast is
   compared with the stored one, and an equal one ends here (duplicate, no write);
3. forecast (:func:`services.monthly.core.forecast.forecast_month`), warm-started from the
   household's checkpoint, with the daily profile from the last weeks of Parquet data;
4. write the components plot's *data* (a few kB; the gateway renders the PNG when it is
   first asked for: rendering here cost ten times the forecast), the checkpoint, the
   cache, the actuals of any month that is now complete (:func:`record_actuals`), and
   **last** the forecast JSON with its fingerprint: the JSON is what the gateway reacts
   to and what marks the work as done, so a failure before it is simply redone on
   redelivery.

Errors are data: a message that is not an S3 event, a key that is not a summary key, and
a summary object that is not a valid :class:`~shared.schema.DailySummary` are written to
the reject sink (``quarantine/monthly/`` in the models bucket) with the original bytes and
the reason, and do not fail the batch (the bad summary day is left out of the history).
Failures on our side (S3, a bug) fail only the messages of that household; SQS redelivers
them and, after ``maxReceiveCount``, moves them to the dead-letter queue.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from services.monthly.core.accuracy import (
    DEFAULT_LOOKBACK,
    complete_months,
    decode_accuracy,
    merge_month,
    month_accuracy,
    month_actual,
)
from services.monthly.core.debounce import (
    DEFAULT_FINAL_COVERAGE,
    CachedSummary,
    decode_cache,
    encode_cache,
    plan_forecast,
)
from services.monthly.core.forecast import (
    DEFAULT_SETTINGS,
    ModelSettings,
    forecast_month,
    warm_start_from_checkpoint,
)
from services.monthly.core.plot import components_document
from services.monthly.core.ports import (
    ForecastConflict,
    RejectSink,
    ResultStore,
    SummarySource,
)
from services.monthly.core.prophet_map import quiet_prophet_logging
from services.monthly.core.series import DailySeries
from shared.archive_layout import parse_summary_key, summary_key
from shared.schema import DailySummary, MonthlyForecast, Quarantined
from shared.shell import (
    BatchOutcome,
    Delivery,
    Environment,
    Handler,
    LambdaEntry,
    ShellDeps,
    batch_handler,
    environment_or_process,
    logger_for,
    metrics_for,
    set_aside,
)

__all__ = [
    "HouseholdOutcome",
    "MonthlyDeps",
    "deps_from_environment",
    "forecast_household",
    "forecast_households",
    "handler",
    "households_of",
    "record_actuals",
]

_TEST_EVENT: Final = "s3:TestEvent"


@dataclass(frozen=True)
class MonthlyDeps(ShellDeps):
    """The monthly function's ports (telemetry and clock: :class:`shared.shell.ShellDeps`)."""

    source: SummarySource
    results: ResultStore
    rejects: RejectSink
    settings: ModelSettings = DEFAULT_SETTINGS
    final_coverage: float = DEFAULT_FINAL_COVERAGE
    plots: bool = True
    accuracy_lookback: int = DEFAULT_LOOKBACK
    archive_bucket: str = "archive"


@dataclass(frozen=True)
class HouseholdOutcome:
    """What handling one household did."""

    household_id: str
    status: Literal["forecast", "duplicate", "not_final"]
    as_of: dt.date | None = None
    result_key: str | None = None
    fallback_reason: str | None = None
    fit_iterations: int | None = None
    warm_started: bool = False
    summaries_read: int = 0
    rejected: int = 0
    months_scored: tuple[str, ...] = ()
    seconds: float = 0.0


# ------------------------------------------------------------------------ one household


def _refresh_cache(
    deps: MonthlyDeps, household_id: str, listing: dict[dt.date, str]
) -> tuple[dict[dt.date, CachedSummary], int, list[Quarantined]]:
    """The household's summaries (day -> ETag, kWh, coverage), reading only changed ones."""
    cached = decode_cache(deps.results.get_cache(household_id))
    stale = sorted(d for d, etag in listing.items() if d not in cached or cached[d].etag != etag)
    fetched = deps.source.get_summaries(household_id, stale) if stale else {}
    entries = {d: cached[d] for d in listing if d not in fetched and d in cached}
    refused: list[Quarantined] = []
    for day, reply in fetched.items():
        if reply is None:  # deleted between the listing and the read
            continue
        body, etag = reply
        try:
            summary = DailySummary.model_validate_json(body)
            if summary.household_id != household_id or summary.date != day:
                raise ValueError(
                    f"holds {summary.household_id} {summary.date}, "
                    f"not its key's {household_id} {day}"
                )
        except (ValidationError, ValueError) as error:
            entries[day] = CachedSummary(etag or listing[day], None, None)
            refused.append(
                Quarantined(
                    original=body,
                    reason=f"invalid_summary: {str(error)[:500]}",
                    source=f"s3://{deps.archive_bucket}/{summary_key(household_id, day)}",
                    quarantined_at=deps.clock(),
                )
            )
            continue
        entries[day] = CachedSummary(etag or listing[day], summary.kwh, summary.coverage)
    return entries, len(stale), refused


#: Tries of one household when concurrent calls of it keep writing first (then SQS
#: redelivers its messages).
MAX_CONFLICTS: Final = 3


def forecast_household(deps: MonthlyDeps, household_id: str) -> HouseholdOutcome:
    """Bring the household's forecast up to date (see the module docstring for the steps).

    Events of one household may be handled by concurrent calls (an SQS mapping invokes up
    to ``MaximumConcurrency`` batches at once). The forecast write is conditional on the
    fingerprint read before it, and a stored forecast of the same day from *other* inputs
    makes the call list again first: a call whose listing is older than a write it meets
    starts over instead of overwriting a newer forecast with an older one. One that
    starts over rewrites everything (checkpoint, cache, accuracy), since the other call's
    writes may have landed before or after its own."""
    for attempt in range(1, MAX_CONFLICTS + 1):
        try:
            return _forecast_household(deps, household_id, rewrite=attempt > 1)
        except ForecastConflict:
            if attempt == MAX_CONFLICTS:
                raise
            deps.logger.info(
                "a concurrent call wrote this household first; starting over",
                extra={"household_id": household_id, "attempt": attempt},
            )
    raise AssertionError("unreachable")


def _forecast_household(deps: MonthlyDeps, household_id: str, *, rewrite: bool) -> HouseholdOutcome:
    started = time.monotonic()
    listing = deps.source.list_summaries(household_id)
    entries, read, refused = _refresh_cache(deps, household_id, listing)
    if refused:
        deps.rejects.reject(refused)  # first: nothing refused is lost if a write fails later
    plan = plan_forecast(
        household_id,
        entries,
        settings_fingerprint=deps.settings.fingerprint(),
        history_days=deps.settings.history_days,
        final_coverage=deps.final_coverage,
    )
    if plan.as_of is None or plan.fingerprint is None:
        return HouseholdOutcome(
            household_id,
            "not_final",
            summaries_read=read,
            rejected=len(refused),
            seconds=time.monotonic() - started,
        )
    stored = deps.results.stored_fingerprint(household_id, plan.as_of)
    if stored == plan.fingerprint and not rewrite:
        return HouseholdOutcome(
            household_id,
            "duplicate",
            plan.as_of,
            summaries_read=read,
            rejected=len(refused),
            seconds=time.monotonic() - started,
        )
    # Written from other inputs: a changed summary, or a concurrent call whose listing is
    # newer than ours. Listing again after reading the fingerprint tells them apart
    # (whoever wrote before that read listed before it, too).
    if (
        stored is not None
        and stored != plan.fingerprint
        and deps.source.list_summaries(household_id) != listing
    ):
        raise ForecastConflict(f"{household_id} {plan.as_of}: summaries changed meanwhile")

    valid = sorted(d for d in plan.window if entries[d].kwh is not None)
    series = DailySeries.from_days(
        household_id,
        valid,
        [float(entries[d].kwh) for d in valid],  # type: ignore[arg-type]
        [float(entries[d].coverage) for d in valid],  # type: ignore[arg-type]
    )
    recent = [d for d in valid if (plan.as_of - d).days < deps.settings.subdaily_days]
    hourly = deps.source.hourly(household_id, recent)
    warm = warm_start_from_checkpoint(deps.results.get_checkpoint(household_id))
    result = forecast_month(
        series, plan.as_of, settings=deps.settings, warm_start=warm, hourly=hourly
    )
    forecast = result.forecast
    if deps.plots:
        document = components_document(
            result.components, household_id, plan.as_of, fallback_reason=forecast.fallback_reason
        )
        key = deps.results.put_components(document)
        forecast = forecast.model_copy(update={"plot_keys": {"components": key}})
    if result.checkpoint is not None:
        deps.results.put_checkpoint(household_id, result.checkpoint)
    deps.results.put_cache(household_id, encode_cache(entries))
    scored = record_actuals(deps, household_id, entries, forecast)
    key = deps.results.put_forecast(forecast, plan.fingerprint, expected=stored)
    return HouseholdOutcome(
        household_id,
        "forecast",
        plan.as_of,
        result_key=key,
        fallback_reason=forecast.fallback_reason,
        fit_iterations=result.fit.iterations if result.fit else None,
        warm_started=bool(result.fit and result.fit.warm_started),
        summaries_read=read,
        rejected=len(refused),
        months_scored=scored,
        seconds=time.monotonic() - started,
    )


def record_actuals(
    deps: MonthlyDeps,
    household_id: str,
    entries: Mapping[dt.date, CachedSummary],
    forecast: MonthlyForecast,
) -> tuple[str, ...]:
    """Score the months that are complete as of ``forecast`` (rule in ``core.accuracy``).

    Called before the forecast JSON is written (that write marks the event as done), so a
    failure here is redone on redelivery; ``forecast`` counts as stored. Returns the months
    whose record was written.
    """
    stored = decode_accuracy(deps.results.get_accuracy(household_id), household_id)
    known = {m.month: m for m in stored.months}
    document, written = stored, []
    for month in complete_months(forecast.as_of, lookback=deps.accuracy_lookback):
        actual = month_actual(month, entries)
        current = forecast.month == month
        if not current and month in known and known[month].inputs == actual.inputs:
            continue  # scored, and nothing it depends on changed
        forecasts = list(deps.results.month_forecasts(household_id, month))
        if current:
            forecasts = [f for f in forecasts if f.as_of != forecast.as_of] + [forecast]
        record = month_accuracy(actual, forecasts, as_of=forecast.as_of)
        if known.get(month) != record:
            document = merge_month(document, record)
            written.append(month)
    if written:
        deps.results.put_accuracy(household_id, document.model_dump_json().encode())
    return tuple(written)


# ------------------------------------------------------------------------------ events


@dataclass
class _Batch:
    """The decoded batch: households per message, and the messages we refuse."""

    households: dict[str, list[str]] = field(default_factory=dict)  # message id -> households
    refused: list[tuple[Delivery, Quarantined]] = field(default_factory=list)
    test_events: int = 0
    ignored: int = 0


def households_of(body: str) -> tuple[list[str], str | None, bool]:
    """Households named by one SQS message body: (households, refusal reason, test event).

    Keys are URL-encoded in S3 events (``unquote_plus``). Events that are not
    ``ObjectCreated`` on a summary key are refused with the reason.
    """
    try:
        event = json.loads(body)
    except json.JSONDecodeError as error:
        return [], f"not_json: {error}", False
    if not isinstance(event, dict):
        return [], "not_an_s3_event: the body is not a JSON object", False
    if event.get("Event") == _TEST_EVENT:
        return [], None, True
    records = event.get("Records")
    if not isinstance(records, list):
        return [], "not_an_s3_event: no Records list", False
    households: list[str] = []
    for record in records:
        try:
            name = str(record["eventName"])
            key = unquote_plus(record["s3"]["object"]["key"])
        except (KeyError, TypeError) as error:
            return [], f"not_an_s3_event: missing {error}", False
        if not name.startswith("ObjectCreated:"):
            continue  # e.g. a removal: nothing to forecast
        parsed = parse_summary_key(key)
        if parsed is None:
            return [], f"not_a_summary_key: {key[:300]!r}", False
        households.append(parsed[0])
    return households, None, False


def _decode_batch(records: Sequence[Delivery], now: dt.datetime) -> _Batch:
    batch = _Batch()
    for record in records:
        households, reason, test_event = households_of(record.text)
        if test_event:
            batch.test_events += 1
        if reason is not None:
            batch.refused.append((record, record.quarantined(reason, now)))
            continue
        batch.households[record.item_id] = households
    return batch


def forecast_households(records: Sequence[Delivery], deps: MonthlyDeps) -> BatchOutcome:
    """Forecast every household the batch's events name, once each; failed message ids."""
    outcome = BatchOutcome()
    counts, logger = outcome.counts, deps.logger
    batch = _decode_batch(records, deps.clock())
    if batch.test_events:
        counts["S3TestEventsSkipped"] += batch.test_events
    set_aside(
        batch.refused,
        deps.rejects.reject,
        outcome,
        logger,
        counter="EventsRejected",
        sink="reject sink",
    )
    households = list(dict.fromkeys(h for hs in batch.households.values() for h in hs))
    errors: dict[str, str] = {}
    for household in households:
        try:
            done = forecast_household(deps, household)
        except Exception as error:  # one household fails, not the batch
            logger.exception(
                "forecast failed; its messages will be retried",
                extra={"household_id": household},
            )
            errors[household] = f"{type(error).__name__}: {error}"
            counts["HouseholdsFailed"] += 1
            continue
        _tally(done, logger, counts)
    for message_id, named in batch.households.items():
        reasons = [errors[h] for h in named if h in errors]
        if reasons:
            outcome.failed[message_id] = reasons[0]
    return outcome


def _tally(outcome: HouseholdOutcome, logger: Logger, counts: Counter[str]) -> None:
    counts["SummariesRead"] += outcome.summaries_read
    if outcome.rejected:
        counts["SummariesRejected"] += outcome.rejected
    if outcome.status == "forecast":
        counts["ForecastsWritten"] += 1
        if outcome.months_scored:
            counts["MonthsScored"] += len(outcome.months_scored)
        if outcome.fallback_reason:
            counts["FallbackForecasts"] += 1
        if outcome.warm_started:
            counts["WarmStarts"] += 1
    elif outcome.status == "duplicate":
        counts["DuplicatesSkipped"] += 1
    else:
        counts["NotFinalSkipped"] += 1
    logger.info(
        "household handled",
        extra={
            "household_id": outcome.household_id,
            "status": outcome.status,
            "as_of": outcome.as_of.isoformat() if outcome.as_of else None,
            "result_key": outcome.result_key,
            "fallback_reason": outcome.fallback_reason,
            "fit_iterations": outcome.fit_iterations,
            "warm_started": outcome.warm_started,
            "months_scored": list(outcome.months_scored),
            "seconds": round(outcome.seconds, 3),
        },
    )


# ---------------------------------------------------------------------- composition root


def deps_from_environment(environment: Environment | None = None) -> MonthlyDeps:
    """Real adapters from the function's environment (set by the SAM template; None: ours)."""
    from services.monthly.adapters.s3 import S3ArchiveReader, S3RejectSink, S3ResultStore
    from services.monthly.settings import MonthlySettings
    from shared.settings import AwsSettings, settings_from

    env = environment_or_process(environment)
    settings = settings_from(MonthlySettings, env)
    s3 = settings_from(AwsSettings, env).client("s3")
    return MonthlyDeps(
        source=S3ArchiveReader(settings.archive_bucket, s3=s3),
        results=S3ResultStore(settings.models_bucket, s3=s3),
        rejects=S3RejectSink(settings.models_bucket, s3=s3),
        plots=settings.plots,
        archive_bucket=settings.archive_bucket,
        logger=logger_for(env),
        metrics=metrics_for(env),
    )


def _make_handler(deps: MonthlyDeps) -> Handler:
    quiet_prophet_logging()
    return batch_handler(
        forecast_households, kinesis=False, message="monthly batch", failed_metric="MessagesFailed"
    )(deps)


handler = LambdaEntry(deps_from_environment, _make_handler)
"""The template's ``MonthlyFunction`` entry point (:class:`shared.shell.LambdaEntry`)."""
