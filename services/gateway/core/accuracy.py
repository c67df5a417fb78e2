"""Live forecast accuracy: each forecast joined with the actuals that arrive after it.

What is scored (the same definitions the API states in its answers):

* **Horizons.** ``next``: the first step of every issued forecast (the realtime service
  issues a forecast as soon as the previous interval completes, so this is the accuracy
  of the next interval, the streaming horizon). ``day_ahead``: the step whose interval
  ends 24 h after the forecast's first step starts (step ``86400 / resolution_s``), when
  the forecast reaches that far (a day-ahead fleet model does; a 4-hour model does not,
  and its ``day_ahead`` stays empty).
* **Actual** of a target interval ``[t, t + resolution)``: the mean kW of its covered
  minutes in the query store's minute arrays (to 1e-9 kW), once at least
  :data:`MIN_COVERAGE` of its minutes are in (it is refined as the rest arrive).
* **Seasonal naive**: the actual of the same interval one day earlier (same rule).
* **Window**: the 7 days ending at the end of the household's newest covered minute
  (event time, so a replay of old data is scored like live data).
* **Metrics**: MAE, RMSE and bias (kW); MASE = the forecasts' MAE / seasonal naive's
  MAE on the intervals where both exist (paired, so < 1 beats "same as yesterday" on
  exactly the same intervals); coverage = share of actuals inside ``[lower, upper]``.

Why recompute instead of accumulate: the forecast side is kept per (household, horizon,
resolution, target start), a keyed overwrite (a redelivered forecast writes the same
values on the same key), the actual side is the keyed per-minute arrays, and the
statistics are always recomputed from what is stored, summed in key order with
:func:`math.fsum`. Duplicates, redeliveries and any arrival order therefore give the same
numbers, to the last bit.

Example:
    >>> import numpy as np
    >>> t = dt.datetime(2013, 1, 2, tzinfo=dt.UTC)
    >>> days = {t.date() - dt.timedelta(days=1): np.full(1440, 1.0), t.date(): np.full(1440, 2.0)}
    >>> target = TargetForecast("next", 1800, datetime_to_us(t), 1.5, 1.0, 2.5, datetime_to_us(t))
    >>> result = household_accuracy("MAC000002", [target], days)
    >>> m = result.horizons["next"].metrics()
    >>> m.pairs, m.mae_kw, m.mae_seasonal_naive_kw, m.mase, m.coverage
    (1, 0.5, 1.0, 0.5, 1.0)
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.gateway.core.consumption import (
    MINUTE_US,
    MINUTES_PER_DAY,
    FloatArray,
    IntArray,
)
from shared.batch import datetime_to_us, us_to_datetime
from shared.schema import Forecast

__all__ = [
    "DAY_S",
    "DEFINITIONS",
    "HORIZONS",
    "HORIZON_DESCRIPTIONS",
    "MIN_COVERAGE",
    "WINDOW",
    "FleetAccuracy",
    "FleetHorizon",
    "Horizon",
    "HorizonMetrics",
    "HorizonSums",
    "HouseholdAccuracy",
    "Pair",
    "TargetForecast",
    "accuracy_days",
    "fleet_accuracy",
    "household_accuracy",
    "join",
    "targets_of",
]

Horizon = Literal["next", "day_ahead"]
HORIZONS: Final[tuple[Horizon, ...]] = ("next", "day_ahead")
HORIZON_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "next": "the first step of every issued forecast: the next interval (lead one step)",
    "day_ahead": "the step ending 24 h after each forecast's first step starts "
    "(only forecasts that reach a day ahead)",
}
DEFINITIONS: Final[Mapping[str, str]] = {
    "actual": "mean kW of the interval's minutes in the query store, scored once at least "
    "80 % of them are in",
    "window": "the 7 days ending at the end of the household's newest reading (event time)",
    "mae_kw": "mean absolute error of the point forecast, kW",
    "rmse_kw": "root mean squared error of the point forecast, kW",
    "bias_kw": "mean of forecast minus actual, kW (positive: over-forecast)",
    "mase": "MAE of the forecasts / MAE of seasonal naive on the intervals where both exist; "
    "below 1 beats 'same as yesterday'",
    "seasonal_naive": "the actual of the same interval one day earlier",
    "coverage": "share of actuals inside the forecast's [lower, upper] band",
}
DAY_S: Final = 86_400
DAY_US: Final = DAY_S * 1_000_000
WINDOW: Final = dt.timedelta(days=7)
MIN_COVERAGE: Final = 0.8
"""Share of an interval's minutes that must be in before it is scored."""
_EPOCH_DAY: Final = dt.date(1970, 1, 1)
_ACTUAL_DECIMALS: Final = 9


@dataclass(frozen=True, order=True)
class TargetForecast:
    """What one forecast said about one target interval, for one horizon.

    The identity is ``(horizon, resolution_s, start_us)`` (per household): one forecast
    per household and issuing time, so a redelivery lands on the same key.
    """

    horizon: Horizon
    resolution_s: int
    start_us: int
    value_kw: float
    lower_kw: float
    upper_kw: float
    issued_us: int

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.horizon, self.resolution_s, self.start_us)

    @property
    def end_us(self) -> int:
        return self.start_us + self.resolution_s * 1_000_000


def _scorable(resolution_s: int, start_us: int) -> bool:
    """Intervals the minute arrays can score: whole minutes, at most a day, minute-aligned."""
    return resolution_s % 60 == 0 and 0 < resolution_s <= DAY_S and start_us % MINUTE_US == 0


def targets_of(forecast: Forecast) -> list[TargetForecast]:
    """The steps of ``forecast`` that are scored: its first step, and its day-ahead step.

    Forecasts whose steps the minute arrays cannot score (a resolution that is not whole
    minutes, or off-minute steps) give nothing.
    """
    res = forecast.resolution_s
    issued = datetime_to_us(forecast.issued_at)
    first = forecast.points[0]
    first_us = datetime_to_us(first.timestamp)
    if not _scorable(res, first_us):
        return []
    found = [
        TargetForecast(
            "next", res, first_us, first.value_kw, first.lower_kw, first.upper_kw, issued
        )
    ]
    day_ahead_us = first_us + DAY_US - res * 1_000_000
    if DAY_S % res == 0 and res < DAY_S:
        for point in forecast.points[1:]:
            stamp = datetime_to_us(point.timestamp)
            if stamp == day_ahead_us:
                found.append(
                    TargetForecast(
                        "day_ahead",
                        res,
                        stamp,
                        point.value_kw,
                        point.lower_kw,
                        point.upper_kw,
                        issued,
                    )
                )
            if stamp >= day_ahead_us:
                break
    return found


def accuracy_days(last_reading_at: dt.datetime) -> tuple[list[dt.date], list[dt.date]]:
    """The minute days and target days a recomputation reads, given the newest reading.

    The window ends at most a day after the newest reading starts (a reading covers at
    most a day); seasonal naive looks one more day back.
    """
    last = last_reading_at.astimezone(dt.UTC).date()
    minutes = [last - dt.timedelta(days=i) for i in range(WINDOW.days + 1, -2, -1)]
    targets = [last - dt.timedelta(days=i) for i in range(WINDOW.days, -2, -1)]
    return minutes, targets


@dataclass(frozen=True)
class _Series:
    """Consecutive minute arrays as one series from ``origin_us`` (NaN: no reading)."""

    origin_us: int
    values: FloatArray

    @classmethod
    def of(cls, days: Mapping[dt.date, FloatArray]) -> _Series | None:
        if not days:
            return None
        first, last = min(days), max(days)
        values = np.full(((last - first).days + 1) * MINUTES_PER_DAY, np.nan)
        for day, minutes in days.items():
            offset = (day - first).days * MINUTES_PER_DAY
            values[offset : offset + MINUTES_PER_DAY] = minutes
        return cls((first - _EPOCH_DAY).days * DAY_US, values)

    def end_us(self) -> int | None:
        """The end of the newest covered minute."""
        covered = np.flatnonzero(~np.isnan(self.values))
        if not len(covered):
            return None
        return self.origin_us + (int(covered[-1]) + 1) * MINUTE_US

    def mean_kw(self, starts_us: IntArray, resolutions_s: IntArray) -> FloatArray:
        """Mean kW of each ``[start, start + resolution)`` with enough of its minutes in
        (NaN otherwise); one gather per resolution for every target of a household."""
        means = np.full(len(starts_us), np.nan)
        first = (starts_us - self.origin_us) // MINUTE_US
        for n in np.unique(resolutions_s // 60).tolist():
            rows = np.flatnonzero(
                (resolutions_s // 60 == n) & (first >= 0) & (first + n <= len(self.values))
            )
            if not len(rows):
                continue
            chunk = self.values[first[rows, None] + np.arange(n)]
            count = np.count_nonzero(~np.isnan(chunk), axis=1)
            ok = (count > 0) & (count >= MIN_COVERAGE * n)
            with np.errstate(invalid="ignore", divide="ignore"):
                means[rows] = np.where(ok, np.nansum(chunk, axis=1) / count, np.nan)
        # Summing an interval's minutes (and kWh -> kW) can move a meter's value by an ulp;
        # rounded to 1e-9 kW, an actual equal to a band edge stays on it.
        return np.round(means, _ACTUAL_DECIMALS)


@dataclass(frozen=True)
class Pair:
    """A target forecast with its actual and seasonal naive (None: not known yet)."""

    target: TargetForecast
    actual_kw: float | None
    naive_kw: float | None

    @property
    def inside(self) -> bool | None:
        if self.actual_kw is None:
            return None
        return self.target.lower_kw <= self.actual_kw <= self.target.upper_kw


def _order(t: TargetForecast) -> tuple[str, int, int, float, float, float, int]:
    return (t.horizon, t.resolution_s, t.start_us, t.value_kw, t.lower_kw, t.upper_kw, t.issued_us)


def _unique(targets: Iterable[TargetForecast]) -> list[TargetForecast]:
    """One target per key, in key order (the same forecast twice is one; of two that
    disagree, the larger in :func:`_order` is kept, whatever the arrival order)."""
    chosen: dict[tuple[str, int, int], TargetForecast] = {}
    for target in sorted(targets, key=_order):
        chosen[target.key] = target
    return list(chosen.values())


def join(targets: Iterable[TargetForecast], days: Mapping[dt.date, FloatArray]) -> list[Pair]:
    """Every target with its actual and seasonal naive from the minute arrays, in key order."""
    unique = _unique(targets)
    series = _Series.of(days)
    if series is None or not unique:
        return [Pair(t, None, None) for t in unique]
    starts = np.array([t.start_us for t in unique], dtype=np.int64)
    resolutions = np.array([t.resolution_s for t in unique], dtype=np.int64)
    actual = series.mean_kw(starts, resolutions).tolist()
    naive = series.mean_kw(starts - DAY_US, resolutions).tolist()
    return [
        Pair(t, None if math.isnan(a) else a, None if math.isnan(b) else b)
        for t, a, b in zip(unique, actual, naive, strict=True)
    ]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HorizonMetrics(_Model):
    """The metrics of one horizon (None where there is nothing to compute them from)."""

    pairs: int
    mae_kw: float | None
    rmse_kw: float | None
    bias_kw: float | None
    coverage: float | None
    mean_interval_width_kw: float | None
    naive_pairs: int
    mae_seasonal_naive_kw: float | None
    mase: float | None


class HorizonSums(_Model):
    """Sums over one horizon's scored pairs: exact to pool across households (the fleet)."""

    pairs: int = 0
    abs_error: float = 0.0
    squared_error: float = 0.0
    error: float = 0.0
    inside: int = 0
    width: float = 0.0
    naive_pairs: int = 0
    naive_abs_error: float = 0.0
    paired_abs_error: float = 0.0

    @classmethod
    def of(cls, pairs: Sequence[Pair]) -> HorizonSums:
        scored = [p for p in pairs if p.actual_kw is not None]
        errors = [p.target.value_kw - p.actual_kw for p in scored]  # type: ignore[operator]
        naive = [p for p in scored if p.naive_kw is not None]
        return cls(
            pairs=len(scored),
            abs_error=math.fsum(abs(e) for e in errors),
            squared_error=math.fsum(e * e for e in errors),
            error=math.fsum(errors),
            inside=sum(bool(p.inside) for p in scored),
            width=math.fsum(p.target.upper_kw - p.target.lower_kw for p in scored),
            naive_pairs=len(naive),
            naive_abs_error=math.fsum(abs(p.naive_kw - p.actual_kw) for p in naive),  # type: ignore[operator]
            paired_abs_error=math.fsum(abs(p.target.value_kw - p.actual_kw) for p in naive),  # type: ignore[operator]
        )

    def __add__(self, other: HorizonSums) -> HorizonSums:
        return HorizonSums(
            **{name: getattr(self, name) + getattr(other, name) for name in type(self).model_fields}
        )

    def mase(self) -> float | None:
        if not self.naive_pairs or self.naive_abs_error <= 0:
            return None
        return self.paired_abs_error / self.naive_abs_error

    def metrics(self) -> HorizonMetrics:
        n, m = self.pairs, self.naive_pairs
        return HorizonMetrics(
            pairs=n,
            mae_kw=self.abs_error / n if n else None,
            rmse_kw=math.sqrt(self.squared_error / n) if n else None,
            bias_kw=self.error / n if n else None,
            coverage=self.inside / n if n else None,
            mean_interval_width_kw=self.width / n if n else None,
            naive_pairs=m,
            mae_seasonal_naive_kw=self.naive_abs_error / m if m else None,
            mase=self.mase(),
        )


class HouseholdAccuracy(_Model):
    """A household's rolling accuracy: the window and, per horizon, the sums of its pairs."""

    household_id: str
    window_start: dt.datetime
    window_end: dt.datetime
    horizons: dict[str, HorizonSums]
    resolutions_s: list[int]
    #: Start of the oldest and end of the newest scored interval (the window may hold less).
    first_scored_at: dt.datetime | None = None
    last_scored_at: dt.datetime | None = None


def household_accuracy(
    household_id: str,
    targets: Iterable[TargetForecast],
    days: Mapping[dt.date, FloatArray],
    *,
    window: dt.timedelta = WINDOW,
) -> HouseholdAccuracy | None:
    """Rolling accuracy over ``window`` ending at the newest covered minute; None: no data."""
    series = _Series.of(days)
    end_us = series.end_us() if series is not None else None
    if end_us is None:
        return None
    start_us = end_us - window // dt.timedelta(microseconds=1)
    inside = [t for t in targets if t.start_us >= start_us and t.end_us <= end_us]
    pairs = join(inside, days)
    scored = [p for p in pairs if p.actual_kw is not None]
    return HouseholdAccuracy(
        household_id=household_id,
        window_start=us_to_datetime(start_us),
        window_end=us_to_datetime(end_us),
        horizons={h: HorizonSums.of([p for p in pairs if p.target.horizon == h]) for h in HORIZONS},
        resolutions_s=sorted({p.target.resolution_s for p in scored}),
        first_scored_at=us_to_datetime(min(p.target.start_us for p in scored)) if scored else None,
        last_scored_at=us_to_datetime(max(p.target.end_us for p in scored)) if scored else None,
    )


@dataclass(frozen=True)
class FleetHorizon:
    """One horizon over the fleet: pooled metrics and the spread of household MASE."""

    pooled: HorizonMetrics
    households: int
    mean_household_mase: float | None
    median_household_mase: float | None
    share_beating_naive: float | None


@dataclass(frozen=True)
class FleetAccuracy:
    """The fleet summary over the households whose window is current."""

    households: int
    stale_households: int
    newest_window_end: dt.datetime | None
    horizons: dict[str, FleetHorizon]


def fleet_accuracy(
    rows: Sequence[HouseholdAccuracy], *, stale_after: dt.timedelta = WINDOW
) -> FleetAccuracy:
    """Pool the households' sums; a household whose window ended more than ``stale_after``
    before the newest one (a meter that went quiet) is counted as stale and left out."""
    if not rows:
        return FleetAccuracy(0, 0, None, {h: _fleet_horizon([]) for h in HORIZONS})
    newest = max(r.window_end for r in rows)
    current = sorted(
        (r for r in rows if r.window_end >= newest - stale_after), key=lambda r: r.household_id
    )
    return FleetAccuracy(
        households=len(current),
        stale_households=len(rows) - len(current),
        newest_window_end=newest,
        horizons={
            h: _fleet_horizon([r.horizons.get(h, HorizonSums()) for r in current]) for h in HORIZONS
        },
    )


def _fleet_horizon(sums: Sequence[HorizonSums]) -> FleetHorizon:
    pooled = sum(sums, HorizonSums())
    mases = [m for m in (s.mase() for s in sums) if m is not None]
    return FleetHorizon(
        pooled=pooled.metrics(),
        households=sum(1 for s in sums if s.pairs),
        mean_household_mase=math.fsum(mases) / len(mases) if mases else None,
        median_household_mase=statistics.median(mases) if mases else None,
        share_beating_naive=sum(m < 1 for m in mases) / len(mases) if mases else None,
    )
