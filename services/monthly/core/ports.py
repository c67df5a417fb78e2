"""The ports of the monthly service: where summaries come from, where results go.

The shell talks to these protocols only; the adapters implement them on S3
(:mod:`services.monthly.adapters.s3`) or on a local folder for the fleet command
(:mod:`services.monthly.adapters.local`), and the tests use in-memory fakes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from types import EllipsisType
from typing import Protocol

from services.monthly.core.series import HourlySeries
from shared.monthly_results import MonthlyComponents
from shared.schema import MonthlyForecast, Quarantined

__all__ = ["ForecastConflict", "RejectSink", "ResultStore", "SummarySource"]


class ForecastConflict(Exception):
    """A conditional forecast write found another fingerprint stored than expected: a
    concurrent call of the same household wrote first (the caller starts over)."""


class SummarySource(Protocol):
    """The archive, read-only: summaries and the minute data behind them."""

    def list_summaries(self, household_id: str) -> dict[dt.date, str]:
        """Every summary day of the household with its ETag (a content version)."""
        ...

    def get_summary(self, household_id: str, day: dt.date) -> tuple[bytes, str] | None:
        """The summary object's bytes and ETag, or None if it is gone."""
        ...

    def get_summaries(
        self, household_id: str, days: Sequence[dt.date]
    ) -> dict[dt.date, tuple[bytes, str] | None]:
        """Several summaries at once (an adapter may fetch them in parallel)."""
        ...

    def hourly(self, household_id: str, days: Sequence[dt.date]) -> HourlySeries | None:
        """Mean power per hour over ``days`` from the archived readings, or None if none."""
        ...


class ResultStore(Protocol):
    """Forecasts, plot data, accuracy, checkpoints and the summaries cache, under
    deterministic keys."""

    def stored_fingerprint(self, household_id: str, as_of: dt.date) -> str | None:
        """The input fingerprint of the stored forecast, None when there is none."""
        ...

    def put_forecast(
        self,
        forecast: MonthlyForecast,
        fingerprint: str,
        expected: str | EllipsisType | None = ...,
    ) -> str:
        """Write the forecast JSON with its fingerprint; returns the key. With
        ``expected`` (a fingerprint, or None for "no forecast yet") the write happens only
        if the stored forecast still has it, atomically, else :class:`ForecastConflict`;
        ``...`` writes unconditionally."""
        ...

    def put_components(self, components: MonthlyComponents) -> str:
        """Write the components plot's data (the gateway renders it); returns the key."""
        ...

    def month_forecasts(self, household_id: str, month: str) -> list[MonthlyForecast]:
        """Every stored forecast of the household-month (``YYYY-MM``), any order."""
        ...

    def get_accuracy(self, household_id: str) -> bytes | None:
        """The household's accuracy document (completed months) or None."""
        ...

    def put_accuracy(self, household_id: str, data: bytes) -> str:
        """Replace the household's accuracy document; returns the key."""
        ...

    def get_checkpoint(self, household_id: str) -> str | None:
        """The stored model JSON (``model_to_json``) or None."""
        ...

    def put_checkpoint(self, household_id: str, model_json: str) -> str:
        """Replace the household's checkpoint; returns the key."""
        ...

    def get_cache(self, household_id: str) -> bytes | None:
        """The summaries cache bytes or None."""
        ...

    def put_cache(self, household_id: str, data: bytes) -> None:
        """Replace the summaries cache."""
        ...


class RejectSink(Protocol):
    """Keeps input we refused (bad events, invalid summaries); raises rather than lose one."""

    def reject(self, items: Sequence[Quarantined]) -> None: ...
