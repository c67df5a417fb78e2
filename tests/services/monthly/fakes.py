"""In-memory fakes of the monthly service's ports, and builders of synthetic inputs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from types import EllipsisType
from typing import Any

import numpy as np

from services.monthly.core.debounce import checkpoint_key, month_prefix, result_key
from services.monthly.core.ports import ForecastConflict
from services.monthly.core.series import DailySeries, HourlySeries
from shared.monthly_results import MonthlyComponents, accuracy_key, components_key
from shared.schema import DailySummary, MonthlyForecast, Quarantined

START = dt.date(2024, 1, 1)


def daily_kwh(
    days: int, *, start: dt.date = START, seed: int = 0, level: float = 10.0
) -> list[float]:
    """A plausible household: a level, a weekend bump, a slow swing and noise (seeded)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(days):
        day = start + dt.timedelta(days=i)
        value = level + 3.0 * (day.weekday() >= 5) + 2.0 * np.sin(i / 58.0) + rng.normal(0, 0.8)
        out.append(round(max(0.5, float(value)), 3))
    return out


def series_of(
    kwh: Sequence[float], *, start: dt.date = START, household: str = "h1"
) -> DailySeries:
    days = [start + dt.timedelta(days=i) for i in range(len(kwh))]
    return DailySeries.from_days(household, days, list(kwh))


def summary(household: str, day: dt.date, kwh: float, coverage: float = 1.0) -> DailySummary:
    first = dt.datetime.combine(day, dt.time(0, 0), tzinfo=dt.UTC)
    return DailySummary(
        household_id=household,
        date=day,
        readings=max(1, round(1440 * coverage)),
        kwh=kwh,
        peak_kw=2.5,
        coverage=coverage,
        first_timestamp=first,
        last_timestamp=first + dt.timedelta(minutes=max(0, round(1440 * coverage) - 1)),
    )


def etag_of(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


class MemoryArchive:
    """The archive's summaries (and optionally hourly data) in memory; counts the reads."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, dt.date], bytes] = {}
        self.hourly_data: dict[str, HourlySeries] = {}
        self.reads = 0

    def put(self, item: DailySummary) -> None:
        self.objects[(item.household_id, item.date)] = item.model_dump_json().encode()

    def put_raw(self, household: str, day: dt.date, body: bytes) -> None:
        self.objects[(household, day)] = body

    def list_summaries(self, household_id: str) -> dict[dt.date, str]:
        return {d: etag_of(b) for (h, d), b in self.objects.items() if h == household_id}

    def get_summary(self, household_id: str, day: dt.date) -> tuple[bytes, str] | None:
        self.reads += 1
        body = self.objects.get((household_id, day))
        return None if body is None else (body, etag_of(body))

    def get_summaries(
        self, household_id: str, days: Sequence[dt.date]
    ) -> dict[dt.date, tuple[bytes, str] | None]:
        return {d: self.get_summary(household_id, d) for d in days}

    def hourly(self, household_id: str, days: Sequence[dt.date]) -> HourlySeries | None:
        return self.hourly_data.get(household_id)


class MemoryResults:
    """The models bucket in memory: key -> (bytes, metadata); ``fail`` raises on writes."""

    def __init__(self, *, fail_on: str | None = None) -> None:
        self.objects: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.writes: list[str] = []
        self.fail_on = fail_on

    def _put(self, key: str, body: bytes, meta: dict[str, str] | None = None) -> str:
        if self.fail_on and self.fail_on in key:
            raise OSError(f"store unavailable for {key}")
        self.objects[key] = (body, meta or {})
        self.writes.append(key)
        return key

    def stored_fingerprint(self, household_id: str, as_of: dt.date) -> str | None:
        item = self.objects.get(result_key(household_id, as_of))
        return None if item is None else item[1].get("fingerprint")

    def put_forecast(
        self,
        forecast: MonthlyForecast,
        fingerprint: str,
        expected: str | EllipsisType | None = ...,
    ) -> str:
        key = result_key(forecast.household_id, forecast.as_of)
        if (
            expected is not ...
            and self.stored_fingerprint(forecast.household_id, forecast.as_of) != expected
        ):
            raise ForecastConflict(f"{key}: stored fingerprint is no longer {expected}")
        return self._put(key, forecast.model_dump_json().encode(), {"fingerprint": fingerprint})

    def put_components(self, components: MonthlyComponents) -> str:
        key = components_key(components.household_id, components.as_of)
        return self._put(key, components.model_dump_json().encode())

    def month_forecasts(self, household_id: str, month: str) -> list[MonthlyForecast]:
        prefix = month_prefix(household_id, month)
        return [
            MonthlyForecast.model_validate_json(body)
            for key, (body, _) in self.objects.items()
            if key.startswith(prefix) and key.endswith(".json")
        ]

    def get_accuracy(self, household_id: str) -> bytes | None:
        item = self.objects.get(accuracy_key(household_id))
        return None if item is None else item[0]

    def put_accuracy(self, household_id: str, data: bytes) -> str:
        return self._put(accuracy_key(household_id), data)

    def get_checkpoint(self, household_id: str) -> str | None:
        item = self.objects.get(checkpoint_key(household_id))
        return None if item is None else item[0].decode()

    def put_checkpoint(self, household_id: str, model_json: str) -> str:
        return self._put(checkpoint_key(household_id), model_json.encode())

    def get_cache(self, household_id: str) -> bytes | None:
        item = self.objects.get(f"cache/{household_id}")
        return None if item is None else item[0]

    def put_cache(self, household_id: str, data: bytes) -> None:
        self._put(f"cache/{household_id}", data)

    def forecasts(self) -> dict[str, dict[str, Any]]:
        return {
            k: json.loads(body)
            for k, (body, _) in self.objects.items()
            if k.startswith("results/") and k.endswith(".json")
        }


class MemoryRejects:
    """Collects refused input; ``fail`` makes it raise, to prove nothing is lost."""

    def __init__(self, *, fail: bool = False) -> None:
        self.items: list[Quarantined] = []
        self.fail = fail

    def reject(self, items: Sequence[Quarantined]) -> None:
        if self.fail:
            raise OSError("reject sink unavailable")
        self.items.extend(items)


def s3_event(keys: Sequence[str], bucket: str = "archive") -> str:
    """The body S3 sends to SQS for ObjectCreated on ``keys`` (keys URL-encoded)."""
    from urllib.parse import quote_plus

    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key)}},
                }
                for key in keys
            ]
        }
    )


def sqs_event(bodies: Sequence[str]) -> dict[str, Any]:
    """A Lambda SQS event with one message per body (message ids m0, m1, ...)."""
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ArchiveEventsQueue",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }
