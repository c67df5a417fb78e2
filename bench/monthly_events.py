"""CPU per monthly summary event, through the Lambda's own per-household step.

Used by ``python -m bench monthly-fleet`` (section 3): real London households, one daily
summary at a time, into :func:`services.monthly.shells.lambda_handler.forecast_household`
with an in-memory archive and the local result store (the S3 layout on disk), so the
figure is the service's CPU per event without network waits. The baseline (same run) adds
rendering the event's components PNG, which the service did on every event before plots
were rendered by the gateway on first request.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from aws_lambda_powertools import Logger, Metrics

from services.monthly.adapters.local import LocalResultStore
from services.monthly.core.series import DailySeries, HourlySeries
from services.monthly.shells.lambda_handler import MonthlyDeps, forecast_household
from shared import monthly_plot
from shared.monthly_results import MonthlyAccuracy, MonthlyComponents, components_key
from shared.schema import DailySummary, Quarantined

__all__ = ["EVENT_DAYS", "event_cpu"]

EVENT_DAYS = tuple(
    dt.date(2013, 12, 1) + dt.timedelta(days=i) for i in range(33)
)  # December 2013, then 1-2 January 2014 (December completes)


class _Archive:
    """The archive's summaries in memory (SummarySource); ETag = the day's content."""

    def __init__(self) -> None:
        self.bodies: dict[tuple[str, dt.date], bytes] = {}

    def put(self, summary: DailySummary) -> None:
        self.bodies[(summary.household_id, summary.date)] = summary.model_dump_json().encode()

    def list_summaries(self, household_id: str) -> dict[dt.date, str]:
        return {d: str(hash(b)) for (h, d), b in self.bodies.items() if h == household_id}

    def get_summary(self, household_id: str, day: dt.date) -> tuple[bytes, str] | None:
        body = self.bodies.get((household_id, day))
        return None if body is None else (body, str(hash(body)))

    def get_summaries(
        self, household_id: str, days: Sequence[dt.date]
    ) -> dict[dt.date, tuple[bytes, str] | None]:
        return {d: self.get_summary(household_id, d) for d in days}

    def hourly(self, household_id: str, days: Sequence[dt.date]) -> HourlySeries | None:
        return None  # London daily data: daily totals only


class _Rejects:
    def __init__(self) -> None:
        self.items: list[Quarantined] = []

    def reject(self, items: Sequence[Quarantined]) -> None:
        self.items.extend(items)


def _summary(series: DailySeries, index: int) -> DailySummary | None:
    kwh, coverage = float(series.kwh[index]), float(series.coverage[index])
    if not np.isfinite(kwh) or not np.isfinite(coverage) or coverage <= 0:
        return None
    day = series.start + dt.timedelta(days=index)
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    readings = max(1, round(48 * coverage))
    return DailySummary(
        household_id=series.household_id,
        date=day,
        readings=readings,
        kwh=kwh,
        peak_kw=kwh / 24 * 3,
        coverage=min(1.0, coverage),
        first_timestamp=midnight,
        last_timestamp=midnight + dt.timedelta(minutes=30 * (readings - 1)),
    )


def event_cpu(sample: Sequence[DailySeries], *, render_every: int = 4) -> dict[str, Any]:
    """CPU seconds per event (and with the old per-event render) over ``sample``."""
    out = Path(tempfile.mkdtemp(prefix="monthly-events-"))
    cpu: list[float] = []
    render: list[float] = []
    outcomes: dict[str, int] = {}
    scored = 0
    try:
        results = LocalResultStore(out)
        archive = _Archive()
        deps = MonthlyDeps(
            source=archive,
            results=results,
            rejects=_Rejects(),
            logger=Logger(service="bench-monthly-events"),
            metrics=Metrics(namespace="bench"),
        )
        for series in sample:
            first = (EVENT_DAYS[0] - series.start).days
            for i in range(first):  # the history before December: no events timed
                item = _summary(series, i)
                if item is not None:
                    archive.put(item)
            for n, day in enumerate(EVENT_DAYS):
                item = _summary(series, (day - series.start).days)
                if item is None:
                    continue
                archive.put(item)
                started = time.process_time()
                outcome = forecast_household(deps, series.household_id)
                cpu.append(time.process_time() - started)
                outcomes[outcome.status] = outcomes.get(outcome.status, 0) + 1
                scored += len(outcome.months_scored)
                if outcome.status == "forecast" and n % render_every == 0:
                    assert outcome.as_of is not None
                    data = (out / components_key(series.household_id, outcome.as_of)).read_bytes()
                    started = time.process_time()
                    monthly_plot.render_png(MonthlyComponents.model_validate_json(data))
                    render.append(time.process_time() - started)
        accuracy = [
            MonthlyAccuracy.model_validate_json(p.read_bytes())
            for p in (out / "accuracy").rglob("*.json")
        ]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    december = [m for a in accuracy for m in a.months if m.month == "2013-12" and m.forecasts]
    render_p50 = float(np.median(render)) if render else 0.0
    return {
        "events": len(cpu),
        "outcomes": outcomes,
        "cpu_p50_s": float(np.median(cpu)),
        "cpu_p90_s": float(np.percentile(cpu, 90)),
        "cpu_mean_s": float(np.mean(cpu)),
        "render_cpu_p50_s": render_p50,
        "renders_timed": len(render),
        "baseline_cpu_p50_s": float(np.median(cpu)) + render_p50,
        "months_scored": scored,
        "december_scored_households": len(december),
        "december_forecasts_scored": sum(len(m.forecasts) for m in december),
    }
