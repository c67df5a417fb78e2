"""A small gateway world: the real API app on fake ports filled with two households.

Shared by the gateway's API tests and the reliability suite's ``api-access`` scenario
(``python -m bench reliability``), which asks every route across households.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from aws_lambda_powertools import Logger
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.gateway.core.accuracy import TargetForecast
from services.gateway.core.consumption import MINUTE_US, minute_updates
from services.gateway.core.model import StoredMonthly, anomaly_of
from services.gateway.core.tokens import issue_token
from services.gateway.shells.api_app import ApiDeps, create_app
from services.gateway.shells.consumer import refresh_accuracy
from shared.batch import ReadingBatch, datetime_to_us
from shared.monthly_results import ForecastError, MonthAccuracy, MonthlyAccuracy, accuracy_key
from shared.schema import DailyPoint, Forecast, ForecastPoint, MonthlyForecast
from testing.reliability.gateway_fakes import (
    FixedQueues,
    MemoryObjects,
    MemoryStore,
    MemoryUploads,
    RecordingReplay,
)

SECRET = "test-secret-0123456789-0123456789-abcdef"  # noqa: S105 - a fake world's key
NOW = dt.datetime(2007, 4, 2, 12, tzinfo=dt.UTC)
A, B = "uci-0001", "uci-0002"
MODELS = "models-bucket"
PNG = b"\x89PNG\r\n\x1a\n fake components plot"


def forecast_for(household: str, issued_at: dt.datetime, *, anomaly: bool = False) -> Forecast:
    points = [
        ForecastPoint(
            timestamp=issued_at + dt.timedelta(minutes=i + 1),
            value_kw=1.0 + i / 10,
            lower_kw=0.5,
            upper_kw=2.5,
        )
        for i in range(3)
    ]
    return Forecast(
        household_id=household,
        issued_at=issued_at,
        resolution_s=60,
        points=points,
        model_version="test-1",
        anomaly_score=3.5 if anomaly else 0.1,
        anomaly=anomaly,
        anomaly_kind="excess" if anomaly else None,
        anomaly_kwh=1.5 if anomaly else None,
        anomaly_duration_s=3600 if anomaly else None,
        anomaly_start=issued_at - dt.timedelta(hours=1) if anomaly else None,
    )


def flat_forecasts(
    household: str,
    first: dt.datetime,
    count: int,
    *,
    resolution_s: int = 900,
    steps: int = 16,
    band: tuple[float, float, float] = (0.4, 1.2, 2.5),
) -> list[Forecast]:
    """``count`` forecasts issued one step apart from ``first``, each flat at ``band``'s
    middle value with its lower and upper bound (past forecasts for accuracy tests)."""
    lower, value, upper = band
    step = dt.timedelta(seconds=resolution_s)
    return [
        Forecast(
            household_id=household,
            issued_at=first + i * step,
            resolution_s=resolution_s,
            points=[
                ForecastPoint(
                    timestamp=first + (i + k) * step,
                    value_kw=value,
                    lower_kw=lower,
                    upper_kw=upper,
                )
                for k in range(steps)
            ],
            model_version="test-1",
            anomaly_score=0.1,
            anomaly=False,
        )
        for i in range(count)
    ]


def monthly_for(household: str) -> MonthlyForecast:
    daily = [
        DailyPoint(
            date=dt.date(2007, 4, d),
            kwh=30.0,
            lower_80=25.0,
            upper_80=35.0,
            lower_95=20.0,
            upper_95=40.0,
            is_actual=d <= 2,
        )
        for d in range(1, 31)
    ]
    return MonthlyForecast(
        household_id=household,
        month="2007-04",
        as_of=dt.date(2007, 4, 2),
        actual_to_date_kwh=60.0,
        rest_of_month_kwh=840.0,
        month_total_kwh=900.0,
        month_total_lower_80=850.0,
        month_total_upper_80=950.0,
        month_total_lower_95=800.0,
        month_total_upper_95=1000.0,
        daily=daily,
        model_version="prophet-test",
        plot_keys={"components": f"results/monthly/household={household}/components.png"},
    )


def past_targets(household_kw: float, start: dt.datetime, hours: int) -> list[TargetForecast]:
    """Half-hourly next-interval targets 10 % high, with a band of +-20 %."""
    first = datetime_to_us(start)
    step = 1800 * 1_000_000
    return [
        TargetForecast(
            "next",
            1800,
            first + i * step,
            household_kw * 1.1,
            household_kw * 0.8,
            household_kw * 1.2,
            first + i * step,
        )
        for i in range(hours * 2)
    ]


def accuracy_for(household: str) -> MonthlyAccuracy:
    """A completed March: its actual next to two forecasts (one inside, one outside 80 %)."""
    forecasts = [
        ForecastError(
            as_of=dt.date(2007, 3, day),
            days_ahead=31 - day,
            month_total_kwh=total,
            lower_80=total - 50,
            upper_80=total + 50,
            lower_95=total - 100,
            upper_95=total + 100,
            error_kwh=total - 1000.0,
            abs_pct_error=abs(total - 1000.0) / 10.0,
            inside_80=abs(total - 1000.0) <= 50,
            inside_95=abs(total - 1000.0) <= 100,
            model_version="prophet-test",
        )
        for day, total in ((10, 1080.0), (20, 1020.0))
    ]
    month = MonthAccuracy(
        month="2007-03",
        actual_kwh=1000.0,
        days=31,
        days_observed=31,
        coverage=1.0,
        complete_because="later_month_started",
        inputs="test",
        forecasts=forecasts,
        mape=5.0,
    )
    return MonthlyAccuracy(household_id=household, months=[month])


def fill(store: MemoryStore, household: str, kw: float) -> None:
    """A day and a half of minute readings, a forecast, an anomaly, a monthly result and
    a day of past half-hourly forecasts, scored."""
    start = datetime_to_us(NOW - dt.timedelta(hours=36))
    stamps = start + np.arange(36 * 60, dtype=np.int64) * MINUTE_US
    batch = ReadingBatch(household, stamps, {"global_active_power_kw": np.full(len(stamps), kw)})
    for key, update in minute_updates(batch).items():
        store.merge_day(key, update)
    store.note_household(household, NOW - dt.timedelta(minutes=1))
    store.put_forecast(forecast_for(household, NOW - dt.timedelta(minutes=1)))
    mark = anomaly_of(forecast_for(household, NOW - dt.timedelta(hours=2), anomaly=True))
    assert mark is not None
    store.put_anomaly(mark)
    monthly = monthly_for(household)
    store.put_monthly(StoredMonthly(monthly, MODELS, f"results/monthly/{household}.json"))
    store.put_targets(household, past_targets(kw, NOW - dt.timedelta(hours=24), 24))
    refresh_accuracy(store, household)


@dataclass
class World:
    app: FastAPI
    client: TestClient
    store: MemoryStore
    uploads: MemoryUploads
    replay: RecordingReplay

    def token(self, *households: str, operator: bool = False, ttl_s: int = 3600) -> str:
        return issue_token(
            SECRET,
            households=households,
            operator=operator,
            ttl_s=ttl_s,
            now=NOW.timestamp(),
        )

    def headers(self, *households: str, operator: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(*households, operator=operator)}"}


def build_world() -> World:
    store = MemoryStore()
    fill(store, A, 1.0)
    fill(store, B, 2.0)
    objects = MemoryObjects(
        {(MODELS, f"results/monthly/household={h}/components.png"): PNG for h in (A, B)}
        | {(MODELS, accuracy_key(h)): accuracy_for(h).model_dump_json().encode() for h in (A, B)}
    )
    uploads = MemoryUploads()
    replay = RecordingReplay(NOW)
    deps = ApiDeps(
        store=store,
        token_secret=SECRET,
        objects=objects,
        models_bucket=MODELS,
        queues=FixedQueues({"QuarantineQueue": 2, "ReadingsFailureQueue": 0}),
        replay=replay,
        uploads=uploads,
        clock=lambda: NOW,
        logger=Logger(service="gateway-test"),
    )
    app = create_app(deps)
    return World(app, TestClient(app, raise_server_exceptions=False), store, uploads, replay)
