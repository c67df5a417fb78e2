"""A completed month's actual total next to every forecast made for it.

Why: a forecast is only as good as its measured error, and the monthly forecasts of a
month can only be scored once the month is over. The rule, applied by the handler each
time it writes a forecast (so redelivered events, which are duplicates, do nothing):

* month ``M`` is **complete** when its last day is final (the as-of day is that day), or
  when a later month has started (the as-of day is in a later month);
* the months looked at are the as-of day's month (if complete) and the ``lookback``
  months before it, so a household that was silent for a few weeks is still scored;
* a month's record is (re)computed when its actual's inputs changed (a late correction:
  another summary ETag) or when it is the month of the forecast just made, and written
  only if it differs from the stored one: replaying the same events leaves the stored
  document byte for byte as it was.

The actual total is the sum of the month's valid daily summaries; ``days_observed`` and
``coverage`` say how complete that sum is.

Example:
    >>> import datetime as dt
    >>> complete_months(dt.date(2024, 5, 3), lookback=2)
    ['2024-03', '2024-04']
    >>> complete_months(dt.date(2024, 4, 30), lookback=1)
    ['2024-03', '2024-04']
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from services.monthly.core.debounce import CachedSummary
from services.monthly.core.series import days_in_month, month_end
from shared.monthly_results import ForecastError, MonthAccuracy, MonthlyAccuracy
from shared.schema import MonthlyForecast

__all__ = [
    "DEFAULT_LOOKBACK",
    "MonthActual",
    "complete_months",
    "decode_accuracy",
    "merge_month",
    "month_accuracy",
    "month_actual",
]

DEFAULT_LOOKBACK = 2


def _month(day: dt.date) -> str:
    return f"{day:%Y-%m}"


def _month_days(month: str) -> list[dt.date]:
    first = dt.date.fromisoformat(f"{month}-01")
    return [first.replace(day=d) for d in range(1, days_in_month(first) + 1)]


def complete_months(as_of: dt.date, *, lookback: int = DEFAULT_LOOKBACK) -> list[str]:
    """The complete months to score when ``as_of`` (a final day) is the newest, oldest first."""
    months = []
    first = as_of.replace(day=1)
    for back in range(lookback, 0, -1):
        year, month = divmod(first.year * 12 + first.month - 1 - back, 12)
        months.append(f"{year:04d}-{month + 1:02d}")
    if as_of == month_end(as_of):
        months.append(_month(as_of))
    return months


@dataclass(frozen=True)
class MonthActual:
    """The actual total of a month from the summaries, and what it was computed from."""

    month: str
    kwh: float
    days: int
    days_observed: int
    coverage: float
    inputs: str


def month_actual(month: str, entries: Mapping[dt.date, CachedSummary]) -> MonthActual:
    """The month's actual total from the household's summaries (invalid days left out)."""
    days = _month_days(month)
    valid = [entries[d] for d in days if d in entries and entries[d].kwh is not None]
    digest = hashlib.sha256(month.encode())
    for day in days:
        if day in entries:
            digest.update(f"|{day.isoformat()}={entries[day].etag}".encode())
    return MonthActual(
        month=month,
        kwh=float(sum(float(e.kwh or 0.0) for e in valid)),
        days=len(days),
        days_observed=len(valid),
        coverage=min(1.0, sum(float(e.coverage or 0.0) for e in valid) / len(days)),
        inputs=digest.hexdigest(),
    )


def _error(forecast: MonthlyForecast, actual: float) -> ForecastError:
    total = forecast.month_total_kwh
    days_ahead = sum(1 for p in forecast.daily if not p.is_actual)
    return ForecastError(
        as_of=forecast.as_of,
        days_ahead=days_ahead,
        month_total_kwh=total,
        lower_80=forecast.month_total_lower_80,
        upper_80=forecast.month_total_upper_80,
        lower_95=forecast.month_total_lower_95,
        upper_95=forecast.month_total_upper_95,
        error_kwh=total - actual,
        abs_pct_error=abs(total - actual) / actual * 100.0 if actual > 0 else None,
        inside_80=forecast.month_total_lower_80 <= actual <= forecast.month_total_upper_80,
        inside_95=forecast.month_total_lower_95 <= actual <= forecast.month_total_upper_95,
        model_version=forecast.model_version,
        fallback_reason=forecast.fallback_reason,
    )


def month_accuracy(
    actual: MonthActual, forecasts: Iterable[MonthlyForecast], *, as_of: dt.date
) -> MonthAccuracy:
    """The month's record: its actual and each forecast of it (one per as-of day)."""
    by_day = {f.as_of: f for f in forecasts if f.month == actual.month}
    errors = [_error(by_day[day], actual.kwh) for day in sorted(by_day)]
    scored = [e.abs_pct_error for e in errors if e.days_ahead > 0 and e.abs_pct_error is not None]
    return MonthAccuracy(
        month=actual.month,
        actual_kwh=actual.kwh,
        days=actual.days,
        days_observed=actual.days_observed,
        coverage=actual.coverage,
        complete_because="last_day_final"
        if _month(as_of) == actual.month
        else "later_month_started",
        inputs=actual.inputs,
        forecasts=errors,
        mape=sum(scored) / len(scored) if scored else None,
    )


def decode_accuracy(data: bytes | None, household_id: str) -> MonthlyAccuracy:
    """The stored document, or an empty one (none yet, or unreadable: it is rebuilt)."""
    if data:
        try:
            stored = MonthlyAccuracy.model_validate_json(data)
            if stored.household_id == household_id:
                return stored
        except ValidationError:
            pass
    return MonthlyAccuracy(household_id=household_id, months=[])


def merge_month(document: MonthlyAccuracy, month: MonthAccuracy) -> MonthlyAccuracy:
    """``document`` with ``month`` added or replaced (months oldest first)."""
    months = {m.month: m for m in document.months}
    months[month.month] = month
    return document.model_copy(update={"months": [months[k] for k in sorted(months)]})
