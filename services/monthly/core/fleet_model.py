"""The fleet model: what thousands of households know that one household's history does not.

**Why.** One household's own history gives its level and its weekly shape, and simple
re-weightings of it are exhausted (issue 15: a 56-day level, a weekday profile, a
28-day median, an EWMA all land within a few % of the trailing 28-day mean). What it
cannot give, above all in its first weeks, is how the level of the *next* days relates
to the last weeks at this time of year (the winter climb, the spring fall, Christmas),
how much a bank holiday or a weekend changes a household like this one, and how wide
the error of a month total really is for a history of this length and a remainder of
this many days. A model trained across the London fleet learns exactly that.

**What it predicts.** The ratio ``y = mean kWh of the remaining days / base``, where
``base`` is the household's mean usable day of the last 28 days (of what it has, for a
short history): scale-free, so one model serves a 3 kWh flat and a 30 kWh house, and a
UCI house in kW*min alike. Five outputs: the quantiles 2.5, 10, 50, 90 and 97.5 % of
``y`` (the 50 % one trained on the month total's absolute percentage error, so it is
the MAPE-optimal point), from :data:`FEATURES` (normalised recent history, the
calendar of the remainder, and the household's ACORN group and tariff when known).
The household's own last year is *not* a feature: a model trained on the months
before an as-of day in 2012 had almost no household with a last year, and with it the
2013 forecasts were worse (measured: 3.3 % better than the trailing mean without the
cap and these features' removal, 7.1 % with). Nor is the level itself (its unit differs
between fleets: UCI's days are in kW*min, and a London-trained model read them as
enormous houses). The quantiles are then *conformalised* on
households and months the network did not train on (split conformal, per band and per
history-length bucket), so the month-total intervals hold their nominal coverage from
a household's first week on.

**Sample paths.** The month total's interval is the calibrated quantile band of ``y``;
the remaining days' joint paths are drawn from it (one level per path, from the
quantile function, so 500 paths are 500 distinct totals whatever the history length)
times the day's shape, plus the household's own day-to-day noise centred within each
path (so it widens the daily bands and leaves the total's band as calibrated).

Pure: weights in, numbers out. Training lives in :mod:`services.monthly.training`; the
shipped weights in :mod:`services.monthly.artifacts`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from services.monthly.core.series import DEFAULT_MIN_COVERAGE, DailySeries, month_end
from shared.holidays import is_bank_holiday

__all__ = [
    "ACORN_GROUPS",
    "FEATURES",
    "LEVELS",
    "FleetModel",
    "HouseholdInfo",
    "Situation",
    "history_bucket",
    "situation",
]

FloatArray = npt.NDArray[np.float64]

LEVELS: Final = (0.025, 0.10, 0.50, 0.90, 0.975)
"""The quantile levels of ``y`` the network outputs (index 2 is the point)."""

ACORN_GROUPS: Final = ("Affluent", "Comfortable", "Adversity")
HISTORY_BUCKETS: Final = (14, 28, 61, 183)
"""Usable-day bounds of the conformal buckets: <14, <28, <61, <183, the rest."""

FEATURES: Final = (
    "history_days",
    "short_history",
    "log_r7",
    "log_r14",
    "log_r56",
    "has_r56",
    "log_median28",
    "cv28",
    "log_last_day",
    "log_weekend_ratio",
    "weekday_adjustment",
    "weekend_share_rest",
    "holiday_share_rest",
    "holiday_share_window",
    "days_left",
    "as_of_day",
    "sin_doy_as_of",
    "cos_doy_as_of",
    "sin_doy_rest",
    "cos_doy_rest",
    "christmas_share_rest",
    "christmas_share_window",
    *(f"acorn_{g.lower()}" for g in ACORN_GROUPS),
    "tariff_tou",
    "info_known",
)
_WINDOW: Final = 28
_PROFILE_DAYS: Final = 56
_SHRINK: Final = 4.0  # pseudo-days pulling each weekday's mean towards the overall mean
_CLIP: Final = 3.0
_MIN_BASE: Final = 1e-3
_HISTORY_CAP: Final = 365  # beyond a year the history's length says nothing new


@dataclass(frozen=True)
class HouseholdInfo:
    """What the utility knows of a household (both optional: unknown is a valid answer)."""

    acorn_group: str | None = None  # "Affluent", "Comfortable", "Adversity"
    tariff: str | None = None  # "Std" or "ToU"


@dataclass(frozen=True, eq=False)
class Situation:
    """One forecast's inputs for the fleet model, and what turns its ratio back into kWh.

    ``rest_dates``: the days after ``as_of`` to the month end; ``shape``: each one's
    expected share of the household's level (its weekday profile, mean 1 over the
    window, scaled to mean 1 over the remaining days: it spreads the total, the ratio
    sets it); ``noise``: the household's recent relative day-to-day deviations from that
    profile (for the daily bands); ``usable_days``: its usable history.
    """

    as_of: dt.date
    x: FloatArray
    base: float
    rest_dates: npt.NDArray[np.datetime64]
    shape: FloatArray
    noise: FloatArray
    usable_days: int


def _log_ratio(value: float, base: float) -> float:
    if not np.isfinite(value) or value <= 0:
        return 0.0 if not np.isfinite(value) else -_CLIP
    return float(np.clip(np.log(value / base), -_CLIP, _CLIP))


def _mean(values: FloatArray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")


def _doy(day: dt.date) -> tuple[float, float]:
    angle = 2 * np.pi * day.timetuple().tm_yday / 365.25
    return float(np.sin(angle)), float(np.cos(angle))


def _christmas(day: dt.date) -> bool:
    return (day.month == 12 and day.day >= 24) or (day.month == 1 and day.day == 1)


def _weekday_profile(values: FloatArray, weekdays: npt.NDArray[np.int64]) -> FloatArray:
    """Each weekday's level relative to the overall mean, shrunk towards 1."""
    ok = np.isfinite(values)
    overall = float(values[ok].mean()) if ok.any() else float("nan")
    if not np.isfinite(overall) or overall <= _MIN_BASE:
        return np.ones(7)
    sums = np.bincount(weekdays[ok], weights=values[ok], minlength=7)
    counts = np.bincount(weekdays[ok], minlength=7)
    profile = (sums + _SHRINK * overall) / (counts + _SHRINK) / overall
    return np.asarray(profile, dtype=np.float64)


def history_bucket(usable_days: int) -> int:
    """The conformal bucket of a history length (0: < 14 usable days ... 4: >= 183)."""
    return int(np.searchsorted(HISTORY_BUCKETS, usable_days, side="right"))


def situation(
    series: DailySeries,
    as_of: dt.date,
    info: HouseholdInfo | None = None,
    *,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> Situation | None:
    """The fleet model's features for forecasting ``as_of``'s month, or None if it cannot.

    None when the household has no usable day with a positive mean in reach (the
    trailing-mean fallback answers then). Only days up to ``as_of`` are read.
    """
    known = series.until(as_of)
    if not len(known):
        return None
    usable = known.usable(min_coverage)
    n_usable = int(usable.sum())
    if not n_usable:
        return None
    values = np.where(usable, known.kwh, np.nan)
    window = values[-_WINDOW:]
    if np.isfinite(window).sum() >= 3:
        base = _mean(window)
    else:  # a long gap: the last 28 usable days, wherever they are
        base = float(values[usable][-_WINDOW:].mean())
    if not np.isfinite(base) or base <= _MIN_BASE:
        return None
    end = month_end(as_of)
    days_left = (end - as_of).days
    first_rest = np.datetime64(as_of, "D") + np.timedelta64(1, "D")
    rest_dates = first_rest + np.arange(days_left).astype("timedelta64[D]")
    rest_days = [as_of + dt.timedelta(days=i + 1) for i in range(days_left)]
    window_days = [as_of - dt.timedelta(days=i) for i in range(min(_WINDOW, len(known)))]
    window_ok = np.isfinite(window[::-1])  # aligned with window_days (newest first)

    recent = values[-_PROFILE_DAYS:]
    recent_days = np.datetime64(as_of, "D") - np.arange(len(recent))[::-1].astype("timedelta64[D]")
    weekdays = ((recent_days.astype(np.int64) + 3) % 7).astype(np.int64)  # Monday 0
    profile = _weekday_profile(recent, weekdays)
    rest_weekdays = ((rest_dates.astype(np.int64) + 3) % 7).astype(np.int64)
    window_weekdays = weekdays[-len(window) :][np.isfinite(window)]
    window_profile = float(profile[window_weekdays].mean()) if len(window_weekdays) else 1.0
    shape = profile[rest_weekdays] / window_profile if days_left else np.empty(0)
    weekday_adjustment = float(np.clip(np.log(shape.mean()), -_CLIP, _CLIP)) if days_left else 0.0
    predicted_recent = base * profile[weekdays] / window_profile
    noise = (recent / predicted_recent - 1.0)[np.isfinite(recent)]

    weekend = recent[weekdays >= 5]
    weekday = recent[weekdays < 5]
    weekend_ratio = (
        _log_ratio(_mean(weekend), _mean(weekday))
        if np.isfinite(_mean(weekday)) and _mean(weekday) > _MIN_BASE
        else 0.0
    )
    older = values[-2 * _WINDOW : -_WINDOW] if len(values) > _WINDOW else np.empty(0)
    r56 = _mean(older)
    last = values[-1]

    def share(flags: Sequence[bool]) -> float:
        return float(np.mean(flags)) if len(flags) else 0.0

    valid_window = [d for d, ok in zip(window_days, window_ok, strict=True) if ok]
    info = info or HouseholdInfo()
    mid_rest = rest_days[len(rest_days) // 2] if rest_days else as_of
    x = [
        np.log1p(min(n_usable, _HISTORY_CAP)) / np.log1p(_HISTORY_CAP),
        float(n_usable < _WINDOW),
        _log_ratio(_mean(values[-7:]), base),
        _log_ratio(_mean(values[-14:]), base),
        _log_ratio(r56, base),
        float(np.isfinite(r56)),
        _log_ratio(float(np.nanmedian(window)) if np.isfinite(window).any() else np.nan, base),
        float(np.clip(np.nanstd(window) / base, 0, _CLIP)) if np.isfinite(window).any() else 0.0,
        _log_ratio(last, base),
        weekend_ratio,
        weekday_adjustment,
        share([d.weekday() >= 5 for d in rest_days]),
        share([is_bank_holiday(d) for d in rest_days]),
        share([is_bank_holiday(d) for d in valid_window]),
        days_left / 31,
        as_of.day / 31,
        *_doy(as_of),
        *_doy(mid_rest),
        share([_christmas(d) for d in rest_days]),
        share([_christmas(d) for d in valid_window]),
        *(float(info.acorn_group == g) for g in ACORN_GROUPS),
        float(info.tariff == "ToU"),
        float(info.acorn_group is not None or info.tariff is not None),
    ]
    return Situation(
        as_of=as_of,
        x=np.asarray(x, dtype=np.float64),
        base=base,
        rest_dates=rest_dates,
        shape=np.asarray(shape / shape.mean() if days_left else shape, dtype=np.float64),
        noise=np.asarray(noise, dtype=np.float64),
        usable_days=n_usable,
    )


# ------------------------------------------------------------------------------- model


def span_months(first_month_end: str, last_month_end: str) -> float:
    """Months from the first to the last training month, both included (ISO dates)."""
    a = dt.date.fromisoformat(first_month_end[:10])
    b = dt.date.fromisoformat(last_month_end[:10])
    return float((b.year - a.year) * 12 + b.month - a.month + 1)


def _relu(x: FloatArray) -> FloatArray:
    return np.maximum(x, 0.0)


@dataclass(frozen=True, eq=False)
class FleetModel:
    """A small MLP over :data:`FEATURES` with conformal offsets: numpy inference only.

    ``layers``: (weights, bias) per dense layer, ReLU between, linear output of the five
    :data:`LEVELS` quantiles of ``y``; ``mean``/``scale`` standardise the features;
    ``offsets[band][bucket]``: how far the band's quantiles are pushed out (in ``y``) per
    history bucket, band 0 the 80 % one, band 1 the 95 % one (split conformal).
    ``meta``: how it was trained (data cut-off, households, seed, validation figures).
    """

    layers: tuple[tuple[FloatArray, FloatArray], ...]
    mean: FloatArray
    scale: FloatArray
    offsets: FloatArray
    meta: Mapping[str, Any]

    @property
    def version(self) -> str:
        """``fleet-mlp-<hash of the weights>``: changes whenever the model does."""
        digest = hashlib.sha256(self.to_json().encode()).hexdigest()
        return f"fleet-mlp-{digest[:8]}"

    @property
    def span_months(self) -> float | None:
        """How many months of data it was trained on (``meta``: ``span_months``, else
        from ``first_month_end``/``last_month_end``); None when its artifact does not say.
        The blend trusts a model more the more seasons it has seen."""
        if self.meta.get("span_months") is not None:
            return float(self.meta["span_months"])
        first, last = self.meta.get("first_month_end"), self.meta.get("last_month_end")
        return span_months(str(first), str(last)) if first and last else None

    def raw(self, x: FloatArray) -> FloatArray:
        """The network's five quantiles of ``y`` for features ``x`` (rows), sorted."""
        h = (np.atleast_2d(x) - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = _relu(h)
        return np.sort(h, axis=1)

    def quantiles(self, x: FloatArray, usable_days: npt.ArrayLike) -> FloatArray:
        """Calibrated quantiles of ``y`` (rows x :data:`LEVELS`), never below zero."""
        q = self.raw(x)
        buckets = np.array([history_bucket(int(n)) for n in np.atleast_1d(usable_days)])
        q[:, 1] -= self.offsets[0, buckets]
        q[:, 3] += self.offsets[0, buckets]
        q[:, 0] -= self.offsets[1, buckets]
        q[:, 4] += self.offsets[1, buckets]
        q[:, 0] = np.minimum(q[:, 0], q[:, 1])
        q[:, 4] = np.maximum(q[:, 4], q[:, 3])
        q[:, 1] = np.minimum(q[:, 1], q[:, 2])
        q[:, 3] = np.maximum(q[:, 3], q[:, 2])
        return np.asarray(np.maximum(q, 0.0), dtype=np.float64)

    def to_json(self) -> str:
        """The artifact's text (exact floats: a round trip gives the same model)."""
        return json.dumps(
            {
                "features": list(FEATURES),
                "levels": list(LEVELS),
                "history_buckets": list(HISTORY_BUCKETS),
                "layers": [{"w": w.tolist(), "b": b.tolist()} for w, b in self.layers],
                "mean": self.mean.tolist(),
                "scale": self.scale.tolist(),
                "offsets": self.offsets.tolist(),
                "meta": dict(self.meta),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> FleetModel:
        """Load an artifact; refuses one trained on other features or levels."""
        data = json.loads(text)
        if tuple(data["features"]) != FEATURES or tuple(data["levels"]) != LEVELS:
            raise ValueError("fleet model artifact was trained on other features or levels")
        if tuple(data.get("history_buckets", ())) != HISTORY_BUCKETS:
            raise ValueError("fleet model artifact has other history buckets")
        layers = tuple(
            (np.asarray(layer["w"], dtype=np.float64), np.asarray(layer["b"], dtype=np.float64))
            for layer in data["layers"]
        )
        return cls(
            layers=layers,
            mean=np.asarray(data["mean"], dtype=np.float64),
            scale=np.asarray(data["scale"], dtype=np.float64),
            offsets=np.asarray(data["offsets"], dtype=np.float64),
            meta=data.get("meta", {}),
        )

    def paths(
        self, s: Situation, n_samples: int, rng: np.random.Generator
    ) -> tuple[FloatArray, FloatArray]:
        """(point per remaining day, ``(n_samples, days)`` joint paths) in kWh.

        Each path's level comes from the calibrated quantile function of ``y`` at a
        stratified uniform draw (linear between the five quantiles, with linear tails
        to 0 and 1, so no two paths share a level); its days are ``level * shape``
        plus the household's own relative noise, centred within the path so the path's
        total stays its level's.
        """
        days = len(s.rest_dates)
        q = self.quantiles(s.x, [s.usable_days])[0]
        point = s.base * q[2] * s.shape
        if not days or n_samples <= 0:
            return point, np.empty((max(n_samples, 0), days))
        u = (np.arange(n_samples) + rng.uniform(size=n_samples)) / n_samples
        rng.shuffle(u)
        knots_u = np.array([0.0, *LEVELS, 1.0])
        lo_tail = q[0] - (q[1] - q[0]) * 0.025 / (0.10 - 0.025)
        hi_tail = q[4] + (q[4] - q[3]) * 0.025 / (0.975 - 0.90)
        knots_q = np.array([max(lo_tail, 0.0), *q, hi_tail])
        level = np.interp(u, knots_u, knots_q)
        paths = s.base * level[:, None] * s.shape[None, :]
        if len(s.noise) >= 2:
            noise = rng.choice(s.noise, size=(n_samples, days), replace=True)
            weights = s.shape / s.shape.sum()
            noise = noise - (noise * weights).sum(axis=1, keepdims=True)
            paths = paths * (1.0 + noise)
        return point, np.maximum(paths, 0.0)
