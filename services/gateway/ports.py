"""The ports of the gateway: the query store, and what the API reads or starts elsewhere.

Every adapter is injected (DynamoDB, S3, SQS on AWS and on the local stack; in-memory
fakes in tests), so the consumers and the API are the same code everywhere.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from services.gateway.core.accuracy import HouseholdAccuracy, TargetForecast
from services.gateway.core.consumption import DayKey, FloatArray, MinuteUpdate
from services.gateway.core.model import (
    AnomalyMark,
    ConsumerProgress,
    HouseholdSummary,
    StoredMonthly,
)
from services.gateway.core.pipeline import ReplayJob, ReplayRequest
from shared.schema import Forecast, Quarantined

__all__ = [
    "GatewayStore",
    "ObjectMissing",
    "ObjectReader",
    "ObjectWriter",
    "QuarantineSink",
    "QueueDepths",
    "ReplayBusy",
    "ReplayStarter",
    "UploadStore",
]


class GatewayStore(Protocol):
    """The query store: idempotent upserts from the consumers, reads for the API.

    Every write method may be called again with the same input (at-least-once delivery)
    and must then leave the store as it was.
    """

    def merge_day(self, key: DayKey, update: MinuteUpdate) -> bool:
        """Apply minute values to a household-day; True if the item changed."""
        ...

    def merge_days(self, updates: Mapping[DayKey, MinuteUpdate]) -> dict[DayKey, bool | Exception]:
        """:meth:`merge_day` for many household-days (batched reads); each day's result,
        or the exception that failed it (the others are applied)."""
        ...

    def note_household(self, household_id: str, last_reading_at: dt.datetime) -> None:
        """Index a household; its latest reading time only moves forward."""
        ...

    def put_forecast(self, forecast: Forecast) -> bool:
        """Keep ``forecast`` as the latest unless a later one is stored; True if kept."""
        ...

    def put_anomaly(self, mark: AnomalyMark) -> None: ...

    def put_monthly(self, result: StoredMonthly) -> bool:
        """Keep a monthly result unless a later ``as_of`` is stored; True if kept."""
        ...

    def record_progress(self, progress: ConsumerProgress) -> None:
        """A consumer's latest arrival time (forward only) and its record count."""
        ...

    def households(self) -> list[HouseholdSummary]: ...

    def household(self, household_id: str) -> HouseholdSummary | None:
        """One index row (a consistent read)."""
        ...

    def households_of(self, household_ids: Sequence[str]) -> dict[str, HouseholdSummary]:
        """The index rows of those households that have one (a consistent read)."""
        ...

    def days(
        self, household_id: str, days: Sequence[dt.date], *, consistent: bool = False
    ) -> dict[dt.date, FloatArray]:
        """The stored minute arrays of those days (days without data are absent);
        ``consistent`` reads every write that completed before the call."""
        ...

    def put_targets(self, household_id: str, targets: Sequence[TargetForecast]) -> None:
        """Keep what forecasts said about target intervals, keyed by
        ``(horizon, resolution, start)``: a redelivered forecast overwrites itself."""
        ...

    def put_targets_of(
        self, targets: Mapping[str, Sequence[TargetForecast]]
    ) -> dict[str, Exception]:
        """:meth:`put_targets` for many households (batched reads); the households whose
        write failed, with the exception (the others are written)."""
        ...

    def targets(self, household_id: str, days: Sequence[dt.date]) -> list[TargetForecast]:
        """The stored targets starting on those UTC days (a consistent read)."""
        ...

    def accuracy_inputs(
        self, wanted: Mapping[str, tuple[Sequence[dt.date], Sequence[dt.date]]]
    ) -> dict[str, tuple[dict[dt.date, FloatArray], list[TargetForecast]]]:
        """Household -> (minute days, target days) wanted -> (:meth:`days`,
        :meth:`targets`) of each, read together (consistent reads)."""
        ...

    def accuracy_ticket(self, household_id: str) -> int:
        """Announce a recomputation of the household's accuracy (call it after writing
        its inputs); the answer only grows, and :meth:`put_accuracy` keeps only the
        result of the newest ticket, which read every input written before it."""
        ...

    def put_accuracy(self, accuracy: HouseholdAccuracy, ticket: int) -> bool:
        """Keep ``accuracy`` unless a newer ticket was taken since; True if kept."""
        ...

    def accuracy(self, household_id: str) -> HouseholdAccuracy | None: ...

    def fleet_accuracy(self) -> list[HouseholdAccuracy]:
        """Every household's stored accuracy."""
        ...

    def latest_forecast(self, household_id: str) -> Forecast | None: ...

    def anomalies(
        self, household_id: str, start: dt.datetime, end: dt.datetime
    ) -> list[AnomalyMark]: ...

    def monthly(self, household_id: str, month: str) -> StoredMonthly | None: ...

    def progress(self) -> list[ConsumerProgress]: ...

    def recent_records(self, since: dt.datetime) -> dict[str, int]:
        """Records processed per consumer since ``since`` (throughput)."""
        ...


class QuarantineSink(Protocol):
    """Keeps refused input with its reason; raises rather than lose an item.

    The same contract as ingest's port (structural typing: any sink of either fits).
    """

    def quarantine(self, items: Sequence[Quarantined]) -> None: ...


class ObjectMissing(LookupError):
    """The object does not exist (deleted, or never written)."""


class ObjectReader(Protocol):
    """Reads whole objects (monthly result JSON and plots)."""

    def read(self, bucket: str, key: str) -> bytes:
        """The object's bytes; :class:`ObjectMissing` if there is none."""
        ...


class ObjectWriter(Protocol):
    """Writes whole objects: the plots the API renders on first request, cached."""

    def write(self, bucket: str, key: str, body: bytes, content_type: str) -> None: ...


class QueueDepths(Protocol):
    """Approximate message counts of the quarantine, failure and dead-letter queues."""

    def depths(self) -> Mapping[str, int | None]:
        """Queue name -> messages (None when the queue could not be read)."""
        ...


class ReplayBusy(RuntimeError):
    """A replay is already running (one at a time keeps the stream's order simple)."""


class ReplayStarter(Protocol):
    """Starts a replay of real data onto the readings stream and reports its progress."""

    def start(self, request: ReplayRequest) -> ReplayJob:
        """Start a replay; :class:`ReplayBusy` while another one runs."""
        ...

    def jobs(self) -> list[ReplayJob]: ...


class UploadStore(Protocol):
    """The raw bucket as the batch path's inbox: put an upload, read its report."""

    def put(self, key: str, body: bytes, metadata: Mapping[str, str] | None = None) -> None:
        """Store ``body`` at ``key`` with S3 user ``metadata`` (e.g. its UTC offset)."""
        ...

    def report(self, key: str) -> dict[str, Any] | None:
        """The JSON report at ``key``, or None while it is not written yet."""
        ...
