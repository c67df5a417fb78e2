"""In-memory fakes of the gateway's ports (fakes over mocks), same rules as the adapters."""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from services.gateway.core.accuracy import HouseholdAccuracy, TargetForecast
from services.gateway.core.consumption import DayKey, FloatArray, MinuteUpdate, merge_minutes
from services.gateway.core.model import (
    AnomalyMark,
    ConsumerProgress,
    HouseholdSummary,
    StoredMonthly,
    monthly_supersedes,
    supersedes,
)
from services.gateway.core.pipeline import ReplayJob, ReplayRequest
from services.gateway.ports import ObjectMissing
from shared.schema import Forecast

_Store = TypeVar("_Store", bound=type)


def _one_call_at_a_time(cls: _Store) -> _Store:
    """Serialise every public method on the instance's lock.

    The gateway consumers write households in parallel (``max_workers``), as DynamoDB
    allows; a fake that iterates its dicts while another thread inserts would fail
    where the real store does not.
    """
    for name, method in list(vars(cls).items()):
        if name.startswith("_") or not callable(method):
            continue

        def locked(self: Any, *args: Any, __method: Callable[..., Any] = method, **kw: Any) -> Any:
            with self._lock:
                return __method(self, *args, **kw)

        setattr(cls, name, functools.wraps(method)(locked))
    return cls


@_one_call_at_a_time
class MemoryStore:
    """A ``GatewayStore`` in dicts; ``fail_days`` makes those household-days fail."""

    def __init__(self, *, fail_days: Sequence[DayKey] = ()) -> None:
        self._lock = threading.RLock()
        self.day_items: dict[DayKey, FloatArray] = {}
        self.writes = 0
        self.index: dict[str, dt.datetime] = {}
        self.forecasts: dict[str, Forecast] = {}
        self.anomaly_items: dict[tuple[str, dt.datetime], AnomalyMark] = {}
        self.monthly_items: dict[tuple[str, str], StoredMonthly] = {}
        self.consumers: dict[str, ConsumerProgress] = {}
        self.throughput: dict[str, list[tuple[dt.datetime, int]]] = defaultdict(list)
        self.target_items: dict[tuple[str, tuple[str, int, int]], TargetForecast] = {}
        self.tickets: dict[str, int] = defaultdict(int)
        self.accuracy_items: dict[str, HouseholdAccuracy] = {}
        self.fail_days = set(fail_days)

    def merge_day(self, key: DayKey, update: MinuteUpdate) -> bool:
        if key in self.fail_days:
            raise OSError(f"store unavailable for {key}")
        merged, changed = merge_minutes(self.day_items.get(key), update)
        if changed:
            self.day_items[key] = merged
            self.writes += 1
        return changed

    def merge_days(self, updates: Mapping[DayKey, MinuteUpdate]) -> dict[DayKey, bool | Exception]:
        result: dict[DayKey, bool | Exception] = {}
        for key, update in updates.items():
            try:
                result[key] = self.merge_day(key, update)
            except Exception as error:
                result[key] = error
        return result

    def note_household(self, household_id: str, last_reading_at: dt.datetime) -> None:
        if household_id not in self.index or self.index[household_id] < last_reading_at:
            self.index[household_id] = last_reading_at

    def put_forecast(self, forecast: Forecast) -> bool:
        stored = self.forecasts.get(forecast.household_id)
        if not supersedes(forecast.issued_at, stored.issued_at if stored else None):
            return False
        self.forecasts[forecast.household_id] = forecast
        return True

    def put_anomaly(self, mark: AnomalyMark) -> None:
        self.anomaly_items[(mark.household_id, mark.timestamp)] = mark

    def put_monthly(self, result: StoredMonthly) -> bool:
        key = (result.forecast.household_id, result.forecast.month)
        stored = self.monthly_items.get(key)
        if not monthly_supersedes(result.forecast.as_of, stored.forecast.as_of if stored else None):
            return False
        self.monthly_items[key] = result
        return True

    def record_progress(self, progress: ConsumerProgress) -> None:
        stored = self.consumers.get(progress.consumer)
        records = progress.records + (stored.records if stored else 0)
        if stored is None or stored.last_arrival_at <= progress.last_arrival_at:
            stored = progress
        self.consumers[progress.consumer] = ConsumerProgress(
            consumer=stored.consumer,
            last_arrival_at=stored.last_arrival_at,
            last_event_at=stored.last_event_at,
            processed_at=stored.processed_at,
            records=records,
        )
        self.throughput[progress.consumer].append((progress.processed_at, progress.records))

    def households(self) -> list[HouseholdSummary]:
        return [HouseholdSummary(h, t) for h, t in sorted(self.index.items())]

    def household(self, household_id: str) -> HouseholdSummary | None:
        last = self.index.get(household_id)
        return HouseholdSummary(household_id, last) if last else None

    def households_of(self, household_ids: Sequence[str]) -> dict[str, HouseholdSummary]:
        return {h: HouseholdSummary(h, self.index[h]) for h in household_ids if h in self.index}

    def days(
        self, household_id: str, days: Sequence[dt.date], *, consistent: bool = False
    ) -> dict[dt.date, FloatArray]:
        return {
            d: self.day_items[DayKey(household_id, d)]
            for d in days
            if DayKey(household_id, d) in self.day_items
        }

    def put_targets(self, household_id: str, targets: Sequence[TargetForecast]) -> None:
        for target in targets:
            self.target_items[(household_id, target.key)] = target

    def put_targets_of(
        self, targets: Mapping[str, Sequence[TargetForecast]]
    ) -> dict[str, Exception]:
        for household_id, household_targets in targets.items():
            self.put_targets(household_id, household_targets)
        return {}

    def accuracy_inputs(
        self, wanted: Mapping[str, tuple[Sequence[dt.date], Sequence[dt.date]]]
    ) -> dict[str, tuple[dict[dt.date, FloatArray], list[TargetForecast]]]:
        return {
            h: (self.days(h, minute_days), self.targets(h, target_days))
            for h, (minute_days, target_days) in wanted.items()
        }

    def targets(self, household_id: str, days: Sequence[dt.date]) -> list[TargetForecast]:
        wanted = set(days)
        return sorted(
            t
            for (h, _), t in self.target_items.items()
            if h == household_id
            and (dt.date(1970, 1, 1) + dt.timedelta(microseconds=t.start_us)) in wanted
        )

    def accuracy_ticket(self, household_id: str) -> int:
        self.tickets[household_id] += 1
        return self.tickets[household_id]

    def put_accuracy(self, accuracy: HouseholdAccuracy, ticket: int) -> bool:
        if self.tickets[accuracy.household_id] != ticket:
            return False
        self.accuracy_items[accuracy.household_id] = accuracy
        return True

    def accuracy(self, household_id: str) -> HouseholdAccuracy | None:
        return self.accuracy_items.get(household_id)

    def fleet_accuracy(self) -> list[HouseholdAccuracy]:
        return [self.accuracy_items[h] for h in sorted(self.accuracy_items)]

    def latest_forecast(self, household_id: str) -> Forecast | None:
        return self.forecasts.get(household_id)

    def anomalies(
        self, household_id: str, start: dt.datetime, end: dt.datetime
    ) -> list[AnomalyMark]:
        marks = [
            m for (h, t), m in self.anomaly_items.items() if h == household_id and start <= t < end
        ]
        return sorted(marks, key=lambda m: m.timestamp)

    def monthly(self, household_id: str, month: str) -> StoredMonthly | None:
        return self.monthly_items.get((household_id, month))

    def progress(self) -> list[ConsumerProgress]:
        return list(self.consumers.values())

    def recent_records(self, since: dt.datetime) -> dict[str, int]:
        return {c: sum(n for t, n in rows if t >= since) for c, rows in self.throughput.items()}


class MemoryObjects:
    """An ``ObjectReader`` and ``ObjectWriter`` over a dict ``(bucket, key) -> bytes``."""

    def __init__(self, objects: Mapping[tuple[str, str], bytes] | None = None) -> None:
        self.objects = dict(objects or {})
        self.writes: list[tuple[str, str]] = []

    def write(self, bucket: str, key: str, body: bytes, content_type: str) -> None:
        self.objects[(bucket, key)] = body
        self.writes.append((bucket, key))

    def read(self, bucket: str, key: str) -> bytes:
        try:
            return self.objects[(bucket, key)]
        except KeyError:
            raise ObjectMissing(f"s3://{bucket}/{key}") from None


class MemoryUploads:
    """An ``UploadStore`` in a dict; ``reports`` are what ingest would have written."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.metadata: dict[str, dict[str, str]] = {}
        self.reports: dict[str, dict[str, Any]] = {}

    def put(self, key: str, body: bytes, metadata: Mapping[str, str] | None = None) -> None:
        self.objects[key] = body
        self.metadata[key] = dict(metadata or {})

    def report(self, key: str) -> dict[str, Any] | None:
        return self.reports.get(key)


class FixedQueues:
    """``QueueDepths`` with fixed answers."""

    def __init__(self, depths: Mapping[str, int | None]) -> None:
        self._depths = dict(depths)

    def depths(self) -> Mapping[str, int | None]:
        return self._depths


class RecordingReplay:
    """A ``ReplayStarter`` that records requests and finishes them at once."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.started: list[ReplayJob] = []

    def start(self, request: ReplayRequest) -> ReplayJob:
        job = ReplayJob(
            id=f"replay-{len(self.started) + 1}",
            request=request,
            state="finished",
            fraction=1.0,
            started_at=self.now,
            finished_at=self.now,
        )
        self.started.append(job)
        return job

    def jobs(self) -> list[ReplayJob]:
        return list(reversed(self.started))
