"""Backtest protocols and naive baselines (pure: arrays in, forecasts and errors out).

**Brownlee's weekly protocol** (J. Brownlee, "How to Develop ... Forecasting Models for
Multi-Step Household Power Consumption"): the UCI minute data summed per day, weeks
Sunday..Saturday, train from 2006-12-17 to 2010-01-02 (159 weeks), then 46 test weeks
(2010-01-03 .. 2010-11-20) forecast 7 days at a time, walk-forward (each week is forecast
from everything before it, then joins the history). Score: the RMSE over all 322
forecast days. **Units:** Brownlee sums the minute values of ``Global_active_power`` (kW),
so a day is in kW*min (kWh x 60); his gaps are filled with the value of the same minute a
day earlier, and days are the file's clock days. With exactly that aggregation
(:func:`brownlee_daily_sums`) our in-run week-one-year-ago baseline reproduces his 465.294
to the third decimal; in kWh it would be 7.75. References: week-one-year-ago 465.3,
AR(7) 381.6, best published (ConvLSTM encoder-decoder) 367.9.

**Rest-of-month protocol**: for every eligible month and as-of days 1, 8, 15 and 22, the
forecaster sees the history up to and including the as-of day; it forecasts the month
total as actual-to-date plus the forecast of the remaining days. Metric: MAPE of the
month total. A month is eligible when every day of it is usable (complete enough) and it
averages at least ``min_daily_kwh`` (a vacant home's near-zero total would make any
percentage error meaningless). Baselines: the trailing 28-day mean per remaining day,
and the same days last year (the same dates, and the same weekdays 364 days earlier);
a last-year baseline without complete last-year data falls back to the trailing mean.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from services.monthly.core.series import (
    DEFAULT_MIN_COVERAGE,
    DailySeries,
    days_in_month,
    month_end,
    month_start,
)

__all__ = [
    "BROWNLEE_FIRST_DAY",
    "BROWNLEE_REFERENCES",
    "BROWNLEE_TEST_WEEKS",
    "BROWNLEE_TRAIN_END",
    "ORIGINS",
    "RestOfMonthTask",
    "WeekTask",
    "ape",
    "ar_forecast",
    "brownlee_daily_sums",
    "brownlee_weeks",
    "daily_persistence",
    "last_year_scaled",
    "rest_of_month_tasks",
    "rmse",
    "same_dates_last_year",
    "same_weekday_mean",
    "same_weekdays_last_year",
    "short_history_tasks",
    "trailing_mean",
    "week_one_year_ago",
    "weekly_persistence",
]

BROWNLEE_FIRST_DAY: Final = dt.date(2006, 12, 17)  # the first Sunday (data[1:])
BROWNLEE_TRAIN_END: Final = dt.date(2010, 1, 2)
BROWNLEE_TEST_WEEKS: Final = 46
BROWNLEE_REFERENCES: Final = {
    "week_one_year_ago": 465.3,
    "ar7": 381.6,
    "best_published_convlstm": 367.9,
}
ORIGINS: Final = (1, 8, 15, 22)
_US_PER_MINUTE: Final = 60_000_000
_MINUTES_PER_DAY: Final = 1440

FloatArray = npt.NDArray[np.float64]


# ------------------------------------------------------------------------------ weekly


def brownlee_daily_sums(
    timestamps_us: npt.NDArray[np.int64],
    kw: FloatArray,
    missing_us: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.datetime64], FloatArray, FloatArray]:
    """Daily sums of minute kW values (kW*min), gaps filled from the same minute a day earlier.

    ``timestamps_us`` are the complete minutes (on the clock whose days are wanted),
    ``missing_us`` the gap minutes. A gap in the first day stays a gap (counted as 0, as
    Brownlee's fill leaves it). Days are whole clock days, the first and last possibly
    partial, as in his resample. Returns (days, sums, coverage), coverage being the
    fraction of the day's minutes inside the file's span.
    """
    stamps = np.concatenate([timestamps_us, missing_us])
    start = int(stamps.min()) // _US_PER_MINUTE
    end = int(stamps.max()) // _US_PER_MINUTE
    grid = np.full(end - start + 1, np.nan)
    grid[np.asarray(timestamps_us) // _US_PER_MINUTE - start] = kw
    gaps = np.flatnonzero(np.isnan(grid))
    for i in gaps:  # in time order, so a multi-day gap copies already-filled values
        if i >= _MINUTES_PER_DAY:
            grid[i] = grid[i - _MINUTES_PER_DAY]
    minute = np.datetime64(start, "m") + np.arange(len(grid)).astype("timedelta64[m]")
    day = minute.astype("datetime64[D]")
    days, inverse = np.unique(day, return_inverse=True)
    sums = np.bincount(inverse, weights=np.nan_to_num(grid))
    coverage = np.bincount(inverse) / _MINUTES_PER_DAY
    return days.astype("datetime64[D]"), sums.astype(np.float64), coverage.astype(np.float64)


@dataclass(frozen=True)
class WeekTask:
    """One walk-forward step: forecast ``target`` (7 days from ``first_day``) from ``history``."""

    first_day: dt.date
    history: FloatArray  # every day from the protocol's first day to first_day - 1
    target: FloatArray


def brownlee_weeks(
    days: npt.NDArray[np.datetime64], values: FloatArray
) -> tuple[npt.NDArray[np.datetime64], list[WeekTask]]:
    """Brownlee's 46 walk-forward weeks from daily values; also the history's day axis.

    The history of week ``i`` ends the day before it (no leakage); the days must be
    contiguous from :data:`BROWNLEE_FIRST_DAY`'s day on.
    """
    first = np.datetime64(BROWNLEE_FIRST_DAY, "D")
    keep = days >= first
    days, values = days[keep], np.asarray(values, dtype=np.float64)[keep]
    if len(days) and np.any(np.diff(days).astype(int) != 1):
        raise ValueError("daily values must be contiguous")
    train = int((np.datetime64(BROWNLEE_TRAIN_END, "D") - first).astype(int)) + 1
    tasks = []
    for week in range(BROWNLEE_TEST_WEEKS):
        cut = train + 7 * week
        if cut + 7 > len(values):
            raise ValueError("not enough data for 46 test weeks")
        tasks.append(
            WeekTask(
                first_day=(first + np.timedelta64(cut, "D")).item(),
                history=values[:cut].copy(),
                target=values[cut : cut + 7].copy(),
            )
        )
    return days, tasks


def week_one_year_ago(history: FloatArray, horizon: int = 7) -> FloatArray:
    """The same 7 days 52 weeks earlier (Brownlee's best naive)."""
    return np.asarray(history[len(history) - 364 : len(history) - 364 + horizon], dtype=np.float64)


def daily_persistence(history: FloatArray, horizon: int = 7) -> FloatArray:
    """The last day, repeated."""
    return np.full(horizon, float(history[-1]))


def weekly_persistence(history: FloatArray, horizon: int = 7) -> FloatArray:
    """The last 7 days."""
    return np.asarray(history[-7:][:horizon], dtype=np.float64)


def ar_forecast(history: FloatArray, horizon: int = 7, order: int = 7) -> FloatArray:
    """An AR(``order``) with intercept, least squares on the whole history, recursive."""
    y = np.asarray(history, dtype=np.float64)
    lags = np.column_stack([y[order - i - 1 : len(y) - i - 1] for i in range(order)])
    design = np.column_stack([np.ones(len(lags)), lags])
    coef, *_ = np.linalg.lstsq(design, y[order:], rcond=None)
    window = list(y[-order:][::-1])
    out = []
    for _ in range(horizon):
        value = float(coef[0] + np.dot(coef[1:], window))
        out.append(value)
        window = [value, *window[:-1]]
    return np.asarray(out)


def rmse(actual: FloatArray, predicted: FloatArray) -> float:
    """Root mean squared error over all values (Brownlee's overall score)."""
    a, p = np.asarray(actual, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    return float(np.sqrt(np.mean((a - p) ** 2)))


# ------------------------------------------------------------------------ rest of month


@dataclass(frozen=True)
class RestOfMonthTask:
    """Forecast the total of ``as_of``'s month knowing the days up to ``as_of``."""

    household_id: str
    as_of: dt.date
    actual_to_date: float
    actual_total: float

    @property
    def days_left(self) -> int:
        return days_in_month(self.as_of) - self.as_of.day

    def history(self, series: DailySeries) -> DailySeries:
        """What the forecaster may see: the series cut after ``as_of`` (no leakage)."""
        return series.until(self.as_of)


def rest_of_month_tasks(
    series: DailySeries,
    year: int,
    *,
    origins: Sequence[int] = ORIGINS,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    min_daily_kwh: float = 0.5,
) -> list[RestOfMonthTask]:
    """The protocol's tasks for one household and year (eligible months only)."""
    tasks: list[RestOfMonthTask] = []
    usable = series.usable(min_coverage)
    for month in range(1, 13):
        first = dt.date(year, month, 1)
        last = month_end(first)
        lo, hi = series.index_of(first), series.index_of(last)
        if lo < 0 or hi >= len(series) or not usable[lo : hi + 1].all():
            continue
        values = series.kwh[lo : hi + 1]
        total = float(values.sum())
        if total < min_daily_kwh * len(values):
            continue
        for day in origins:
            if day > len(values):  # e.g. as-of day 30 in February
                continue
            tasks.append(
                RestOfMonthTask(
                    household_id=series.household_id,
                    as_of=first.replace(day=day),
                    actual_to_date=float(values[:day].sum()),
                    actual_total=total,
                )
            )
    return tasks


SHORT_HISTORY_DAYS: Final = (7, 10, 14, 21, 28, 35, 42, 49, 56)
"""Days of history of the short-history protocol's as-of days (a household's first weeks)."""


def short_history_tasks(
    series: DailySeries,
    *,
    history_days: Sequence[int] = SHORT_HISTORY_DAYS,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    min_daily_kwh: float = 0.5,
) -> list[RestOfMonthTask]:
    """The short-history protocol: a new household, as of its ``n``-th day of data.

    The month of each as-of day counts from the household's first day (its first month
    is partial); a task needs every day of that month from there usable, and at least
    ``min_daily_kwh`` per day on average.
    """
    tasks: list[RestOfMonthTask] = []
    usable = series.usable(min_coverage)
    for n in history_days:
        as_of = series.start + dt.timedelta(days=n - 1)
        first = max(month_start(as_of), series.start)
        lo, hi = series.index_of(first), series.index_of(month_end(as_of))
        if hi >= len(series) or not usable[lo : hi + 1].all():
            continue
        values = series.kwh[lo : hi + 1]
        if values.mean() < min_daily_kwh:
            continue
        tasks.append(
            RestOfMonthTask(
                household_id=series.household_id,
                as_of=as_of,
                actual_to_date=float(values[: series.index_of(as_of) - lo + 1].sum()),
                actual_total=float(values.sum()),
            )
        )
    return tasks


def trailing_mean(
    history: DailySeries,
    as_of: dt.date,
    days_left: int,
    *,
    window: int = 28,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> float:
    """Rest of month = mean of the usable days among the last ``window`` x days left.

    Without any usable day in the window, the last ``window`` usable days of the history.
    """
    recent = history.between(as_of - dt.timedelta(days=window - 1), as_of)
    values = recent.kwh[recent.usable(min_coverage)]
    if not len(values):
        known = history.until(as_of)
        values = known.kwh[known.usable(min_coverage)][-window:]
    return float(values.mean()) * days_left if len(values) else 0.0


def _last_year(
    history: DailySeries,
    as_of: dt.date,
    days_left: int,
    shift: Callable[[dt.date], dt.date],
    fallback: float,
    min_coverage: float,
) -> tuple[float, bool]:
    days = [as_of + dt.timedelta(days=i + 1) for i in range(days_left)]
    usable = history.usable(min_coverage)
    total = 0.0
    for day in days:
        i = history.index_of(shift(day))
        if i < 0 or i >= len(history) or not usable[i]:
            return fallback, False
        total += float(history.kwh[i])
    return total, True


def _same_date_a_year_before(day: dt.date) -> dt.date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def same_dates_last_year(
    history: DailySeries,
    as_of: dt.date,
    days_left: int,
    *,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> tuple[float, bool]:
    """The same calendar dates a year earlier; (value, False) = fell back to the trailing mean."""
    fallback = trailing_mean(history, as_of, days_left, min_coverage=min_coverage)
    return _last_year(history, as_of, days_left, _same_date_a_year_before, fallback, min_coverage)


def same_weekdays_last_year(
    history: DailySeries,
    as_of: dt.date,
    days_left: int,
    *,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> tuple[float, bool]:
    """The same weekdays 52 weeks (364 days) earlier; falls back like the dates variant."""
    fallback = trailing_mean(history, as_of, days_left, min_coverage=min_coverage)
    return _last_year(
        history, as_of, days_left, lambda d: d - dt.timedelta(days=364), fallback, min_coverage
    )


def same_weekday_mean(
    history: DailySeries,
    as_of: dt.date,
    days_left: int,
    *,
    weeks: int = 4,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> float:
    """Rest of month: each remaining day is the mean of its weekday over the last ``weeks``
    weeks (usable days only); a weekday without any falls back to the trailing mean."""
    if not days_left:
        return 0.0
    recent = history.between(as_of - dt.timedelta(days=7 * weeks - 1), as_of)
    ok = recent.usable(min_coverage)
    weekday = (recent.dates.astype(np.int64) + 3) % 7  # Monday 0
    fallback = trailing_mean(history, as_of, 1, window=7 * weeks, min_coverage=min_coverage)
    total = 0.0
    for i in range(days_left):
        day = as_of + dt.timedelta(days=i + 1)
        values = recent.kwh[ok & (weekday == day.weekday())]
        total += float(values.mean()) if len(values) else fallback
    return total


def last_year_scaled(
    history: DailySeries,
    as_of: dt.date,
    days_left: int,
    *,
    window: int = 28,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> tuple[float, bool]:
    """The same weekdays 364 days earlier, scaled by this year's trailing ``window`` days
    over the same days last year; (value, False) = fell back to the trailing mean."""
    fallback = trailing_mean(history, as_of, days_left, window=window, min_coverage=min_coverage)
    rest, ok = _last_year(
        history, as_of, days_left, lambda d: d - dt.timedelta(days=364), fallback, min_coverage
    )
    if not ok or not days_left:
        return fallback, ok
    now = history.between(as_of - dt.timedelta(days=window - 1), as_of)
    then = history.between(as_of - dt.timedelta(days=364 + window - 1), as_of - dt.timedelta(364))
    both = now.usable(min_coverage) & then.usable(min_coverage)
    if both.sum() < window // 2 or then.kwh[both].sum() <= 0:
        return fallback, False
    return rest * float(now.kwh[both].sum() / then.kwh[both].sum()), True


def ape(actual: float, predicted: float) -> float:
    """Absolute percentage error (%)."""
    return abs(predicted - actual) / abs(actual) * 100.0


def month_of(day: dt.date) -> tuple[dt.date, dt.date]:
    """First and last day of ``day``'s month."""
    return month_start(day), month_end(day)
