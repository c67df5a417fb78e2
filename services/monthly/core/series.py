"""A household's daily history as the monthly forecaster sees it: one value per calendar day.

Why a dense calendar: the forecaster, the backtests and the fallback all reason in days
("the remaining days of the month", "the same days last year", "the trailing 28 days"),
and a missing day must stay visible as a gap (``NaN``), not silently shift the calendar.

A day's ``kwh`` is what was metered that day; its ``coverage`` (0..1, from the archive's
:class:`~shared.schema.DailySummary`) says how much of the day the readings cover. Only
days with ``coverage >= min_coverage`` are *usable* for fitting: a day with a gap of
several hours under-counts its consumption and would read as a dip.

Example:
    >>> import datetime as dt
    >>> s = DailySeries.from_days("h1", [dt.date(2024, 1, 1), dt.date(2024, 1, 3)],
    ...                           [10.0, 12.0], [1.0, 0.5])
    >>> s.kwh.tolist(), s.end
    ([10.0, nan, 12.0], datetime.date(2024, 1, 3))
    >>> s.usable(0.9).tolist()
    [True, False, False]
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from shared.schema import DailySummary

__all__ = [
    "DEFAULT_MIN_COVERAGE",
    "DailySeries",
    "HourlySeries",
    "days_in_month",
    "hourly_mean_kw",
    "month_end",
    "month_start",
]

DEFAULT_MIN_COVERAGE: Final = 0.9
"""A day missing more than 2.4 hours of readings is not used for fitting."""

_US_PER_HOUR: Final = 3_600_000_000
_DAY: Final = np.timedelta64(1, "D")
_EMPTY: Final = np.empty(0)
_EPOCH_ORDINAL: Final = dt.date(1970, 1, 1).toordinal()

FloatArray = npt.NDArray[np.float64]


def month_start(day: dt.date) -> dt.date:
    """The first day of ``day``'s month."""
    return day.replace(day=1)


def days_in_month(day: dt.date) -> int:
    """How many days ``day``'s month has."""
    return calendar.monthrange(day.year, day.month)[1]


def month_end(day: dt.date) -> dt.date:
    """The last day of ``day``'s month."""
    return day.replace(day=days_in_month(day))


@dataclass(frozen=True, eq=False)
class DailySeries:
    """Daily kWh of one household from ``start``, one entry per calendar day (gaps: NaN)."""

    household_id: str
    start: dt.date
    kwh: FloatArray
    coverage: FloatArray

    def __post_init__(self) -> None:
        if self.kwh.shape != self.coverage.shape or self.kwh.ndim != 1:
            raise ValueError("kwh and coverage must be 1-d arrays of the same length")

    def __len__(self) -> int:
        return len(self.kwh)

    @classmethod
    def from_days(
        cls,
        household_id: str,
        days: Sequence[dt.date],
        kwh: Sequence[float] | FloatArray,
        coverage: Sequence[float] | FloatArray | None = None,
    ) -> DailySeries:
        """Place (day, kWh, coverage) values on a dense calendar; duplicates: the last wins.

        Non-finite kWh values are gaps (coverage 0), never numbers.
        """
        stamps = np.array([np.datetime64(d, "D") for d in days], dtype="datetime64[D]")
        return cls.from_arrays(household_id, stamps, kwh, coverage)

    @classmethod
    def from_arrays(
        cls,
        household_id: str,
        days: npt.NDArray[np.datetime64],
        kwh: Sequence[float] | FloatArray,
        coverage: Sequence[float] | FloatArray | None = None,
    ) -> DailySeries:
        """Like :meth:`from_days` with ``datetime64[D]`` days (no Python objects: fast)."""
        values = np.asarray(kwh, dtype=np.float64)
        covered = (
            np.ones(len(values)) if coverage is None else np.asarray(coverage, dtype=np.float64)
        )
        if len(days) != len(values) or len(values) != len(covered):
            raise ValueError("days, kwh and coverage must have the same length")
        if not len(days):
            return cls(household_id, dt.date(1970, 1, 1), _EMPTY, _EMPTY)
        ordinals = np.asarray(days, dtype="datetime64[D]").astype(np.int64) + _EPOCH_ORDINAL
        first = int(ordinals.min())
        size = int(ordinals.max()) - first + 1
        dense_kwh = np.full(size, np.nan)
        dense_cov = np.zeros(size)
        finite = np.isfinite(values) & np.isfinite(covered)
        positions = ordinals - first
        dense_kwh[positions[finite]] = values[finite]
        dense_cov[positions[finite]] = np.clip(covered[finite], 0.0, 1.0)
        return cls(household_id, dt.date.fromordinal(first), dense_kwh, dense_cov)

    @classmethod
    def from_summaries(cls, summaries: Iterable[DailySummary]) -> DailySeries:
        """The series of the archive's daily summaries of one household."""
        items = sorted(summaries, key=lambda s: s.date)
        households = {s.household_id for s in items}
        if len(households) > 1:
            raise ValueError(f"summaries of several households: {sorted(households)}")
        return cls.from_days(
            households.pop() if households else "unknown",
            [s.date for s in items],
            [s.kwh for s in items],
            [s.coverage for s in items],
        )

    @property
    def end(self) -> dt.date:
        """The last day (equal to ``start`` - 1 day for an empty series)."""
        return self.start + dt.timedelta(days=len(self) - 1)

    @property
    def dates(self) -> npt.NDArray[np.datetime64]:
        """The calendar as ``datetime64[D]``."""
        return np.datetime64(self.start, "D") + np.arange(len(self)) * _DAY

    def index_of(self, day: dt.date) -> int:
        """Position of ``day`` (may be outside ``0..len-1``)."""
        return (day - self.start).days

    def usable(self, min_coverage: float = DEFAULT_MIN_COVERAGE) -> npt.NDArray[np.bool_]:
        """Days fit to use: a finite kWh value, not negative, over enough of the day."""
        with np.errstate(invalid="ignore"):
            return np.isfinite(self.kwh) & (self.kwh >= 0) & (self.coverage >= min_coverage)

    def between(self, first: dt.date, last: dt.date) -> DailySeries:
        """The days ``first..last`` (inclusive), padded with gaps outside the data."""
        size = max(0, (last - first).days + 1)
        kwh = np.full(size, np.nan)
        coverage = np.zeros(size)
        lo = max(0, self.index_of(first))
        hi = min(len(self), self.index_of(last) + 1)
        if lo < hi:
            offset = self.index_of(first)
            kwh[lo - offset : hi - offset] = self.kwh[lo:hi]
            coverage[lo - offset : hi - offset] = self.coverage[lo:hi]
        return DailySeries(self.household_id, first, kwh, coverage)

    def until(self, last: dt.date) -> DailySeries:
        """Everything up to and including ``last`` (what is known on that day)."""
        if not len(self) or last < self.start:
            return DailySeries(self.household_id, last + dt.timedelta(days=1), _EMPTY, _EMPTY)
        return self.between(self.start, last)


@dataclass(frozen=True, eq=False)
class HourlySeries:
    """Mean power per UTC hour (kW), for the daily-seasonality fit; gaps are absent hours."""

    hours: npt.NDArray[np.datetime64]
    kw: FloatArray

    def __len__(self) -> int:
        return len(self.kw)


def hourly_mean_kw(
    timestamps_us: npt.NDArray[np.int64],
    power_kw: FloatArray | None = None,
    energy_kwh: FloatArray | None = None,
    interval_s: FloatArray | None = None,
) -> HourlySeries:
    """Mean power per hour from minute power readings or from interval energy readings.

    A reading with power counts as that power; one with only energy counts as
    ``energy / interval`` (a London half-hour of 0.5 kWh is 1 kW). Hours without any
    usable reading are left out, not zero.
    """
    ts = np.asarray(timestamps_us, dtype=np.int64)
    kw = np.full(len(ts), np.nan)
    if power_kw is not None:
        kw = np.asarray(power_kw, dtype=np.float64).copy()
    if energy_kwh is not None and interval_s is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            derived = np.asarray(energy_kwh, dtype=np.float64) / (
                np.asarray(interval_s, dtype=np.float64) / 3600.0
            )
        kw = np.where(np.isfinite(kw), kw, derived)
    ok = np.isfinite(kw)
    if not ok.any():
        return HourlySeries(np.empty(0, dtype="datetime64[h]"), np.empty(0))
    hour = ts[ok] // _US_PER_HOUR
    values = kw[ok]
    unique, inverse = np.unique(hour, return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse)
    return HourlySeries(unique.astype("datetime64[h]"), sums / counts)
