"""What the query store holds besides consumption, and the rules that make writes idempotent.

Each item has one deterministic key and a merge rule that gives the same result however
often, and in whatever order of redelivery, its inputs arrive:

* the latest forecast of a household: replaced only by a forecast issued *later*
  (:func:`supersedes`), so a redelivered or late older forecast is a no-op;
* an anomaly: keyed by household and the issuing time of the forecast that flagged it, so
  a redelivery overwrites itself;
* a monthly result: keyed by household and month, replaced by a result of the same or a
  later ``as_of`` (a recomputation of the same day may fix a result; an older one never
  overwrites a newer one);
* the households index: the latest reading time only moves forward;
* consumer progress (pipeline health): the latest arrival time only moves forward;
  throughput counters are approximate under redelivery, which is acceptable for a
  health gauge and said so in the API.

Example:
    >>> import datetime as dt
    >>> t = dt.datetime(2007, 4, 1, tzinfo=dt.UTC)
    >>> supersedes(t, None), supersedes(t, t), supersedes(t + dt.timedelta(seconds=1), t)
    (True, False, True)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shared.schema import Forecast, MonthlyForecast

__all__ = [
    "AnomalyMark",
    "ConsumerHealth",
    "ConsumerProgress",
    "HouseholdSummary",
    "PipelineHealth",
    "StoredMonthly",
    "anomaly_of",
    "monthly_supersedes",
    "pipeline_health",
    "supersedes",
]


def supersedes(candidate: dt.datetime, stored: dt.datetime | None) -> bool:
    """Whether a forecast issued at ``candidate`` replaces the stored one."""
    return stored is None or candidate > stored


def monthly_supersedes(candidate: dt.date, stored: dt.date | None) -> bool:
    """Whether a monthly result as of ``candidate`` replaces the stored one."""
    return stored is None or candidate >= stored


@dataclass(frozen=True)
class AnomalyMark:
    """A forecast's anomaly verdict on a household's latest data."""

    household_id: str
    timestamp: dt.datetime
    score: float
    model_version: str
    #: What and how large (``Forecast.anomaly_kind`` ...); ``None`` from older producers.
    kind: str | None = None
    kwh: float | None = None
    duration_s: int | None = None
    started_at: dt.datetime | None = None


def anomaly_of(forecast: Forecast) -> AnomalyMark | None:
    """The anomaly a forecast flags, if any; stamped with the forecast's issuing time."""
    if not forecast.anomaly:
        return None
    return AnomalyMark(
        household_id=forecast.household_id,
        timestamp=forecast.issued_at,
        score=forecast.anomaly_score,
        model_version=forecast.model_version,
        kind=forecast.anomaly_kind,
        kwh=forecast.anomaly_kwh,
        duration_s=forecast.anomaly_duration_s,
        started_at=forecast.anomaly_start,
    )


@dataclass(frozen=True)
class HouseholdSummary:
    """One row of the households index."""

    household_id: str
    last_reading_at: dt.datetime | None = None


@dataclass(frozen=True)
class StoredMonthly:
    """A monthly result and the models-bucket object it was read from."""

    forecast: MonthlyForecast
    bucket: str
    key: str


@dataclass(frozen=True)
class ConsumerProgress:
    """What one consumer (readings, forecasts, results) has processed so far."""

    consumer: str
    last_arrival_at: dt.datetime
    last_event_at: dt.datetime | None
    processed_at: dt.datetime
    records: int = 0


@dataclass(frozen=True)
class ConsumerHealth:
    """A consumer's lag: how late the last batch was processed, and how long ago."""

    consumer: str
    lag_s: float
    idle_s: float
    last_arrival_at: dt.datetime
    last_event_at: dt.datetime | None
    records_per_s: float


@dataclass(frozen=True)
class PipelineHealth:
    """Stream lag and throughput per consumer, plus queue depths."""

    consumers: list[ConsumerHealth]
    queues: dict[str, int | None] = field(default_factory=dict)


def pipeline_health(
    progress: Sequence[ConsumerProgress],
    recent_records: Mapping[str, int],
    queues: Mapping[str, int | None],
    *,
    now: dt.datetime,
    window: dt.timedelta,
) -> PipelineHealth:
    """Health from consumer progress; ``recent_records`` counts records in the last ``window``.

    ``lag_s`` is the processing time of the last batch minus the arrival time of its last
    record on the stream (the iterator age Lambda reports); ``idle_s`` is how long ago
    that was (a stalled consumer shows a growing ``idle_s``).
    """
    seconds = window.total_seconds()
    consumers = [
        ConsumerHealth(
            consumer=p.consumer,
            lag_s=max(0.0, (p.processed_at - p.last_arrival_at).total_seconds()),
            idle_s=max(0.0, (now - p.processed_at).total_seconds()),
            last_arrival_at=p.last_arrival_at,
            last_event_at=p.last_event_at,
            records_per_s=recent_records.get(p.consumer, 0) / seconds if seconds > 0 else 0.0,
        )
        for p in sorted(progress, key=lambda p: p.consumer)
    ]
    return PipelineHealth(consumers=consumers, queues=dict(queues))
