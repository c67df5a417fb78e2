"""Rest-of-month forecasts: Prophet on a household's daily kWh, with a fallback model.

What a forecast is: on the *as-of* day (the latest complete day the household has), the
month so far is known and the remaining days are forecast, each with 80 % and 95 %
intervals, together with the month total and its intervals
(:class:`shared.schema.MonthlyForecast`). Days of the month so far that are missing or
incomplete (coverage below ``min_coverage``) are estimated like the future days and
flagged ``is_actual=False``, so ``month_total = actual_to_date + estimated gaps +
rest_of_month``.

**Why the month total's intervals come from sample paths.** A daily interval is a
marginal quantile of that day. The 10 % quantile of a sum is not the sum of the days'
10 % quantiles: that would assume every day misses in the same direction at once (perfect
correlation), which makes the interval of a 20-day rest of month several times too wide
when the daily noise is independent (the width of a sum of independent days grows with
the square root of the days, not linearly). So the forecaster draws ``uncertainty_samples``
joint paths of the remaining days (trend changes drawn as Prophet's generative model
does, plus a block of *consecutive* in-sample residuals, which keeps the day-to-day
dependence of a household's errors), sums each path, and takes the quantiles of those
sums.

**Model.** Prophet (linear trend, additive weekly and yearly seasonality), fitted by MAP
with :class:`~services.monthly.core.prophet_map.MapBackend` (the same model as Prophet's
Stan program, solved in-process) or Prophet's own Stan backend (``optimizer="stan"``). The
parameters of the previous fit are its warm start (``init=warm_start_params(m)``,
Prophet's documented way). Daily seasonality cannot be seen in daily totals (it sums to
zero over a day), so it comes from a second, small fit on the household's recent
*sub-daily* data (hourly mean kW, :func:`daily_profile`) when the archive has it, and is
reported for the plot only; it does not change the daily totals.

**The fleet model** (:mod:`services.monthly.core.fleet_model`, weights shipped in
:mod:`services.monthly.artifacts`): a network trained across the 5,566 London households
that predicts calibrated quantiles of the remaining days' mean relative to the recent
level. The point forecast of the remaining days blends it by history length (weights in
:class:`ModelSettings`, chosen on a validation set: 2012 as-of days and new households
outside the benchmark's sample, never on its 2013 test months): from 61 usable days a
quarter fleet model and three quarters Prophet; from 28 to 60 days 0.2 fleet model, 0.4
Prophet and 0.4 the household's recent level (its trailing 28-day mean spread by its
weekday profile); below 28 days, where Prophet cannot be fitted (the components plot has
no Prophet panels and ``fallback_reason`` says so), the recent level alone (the fleet
model's point lost to it there). The intervals are always the fleet model's month-total
band, conformalised across the fleet per history length and drawn from 500 distinct
paths, moved with the blended point; the 95 % one is widened 1.25x around the point.

**Fallback** (statsforecast's ``fallback_model``): when the history is too short, constant,
empty or the fit fails, the forecast is the trailing mean of the last usable days for each
remaining day, with empirical intervals (bootstrap of those days), and says why in
``fallback_reason``; its ``model_version`` is ``FALLBACK_VERSION``.

The settings (optimizer and its stopping rule, history length, samples, trend, level
half-life, interval width) were chosen by measurement; see :data:`DEFAULT_SETTINGS`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from services.monthly.core.fleet_model import FleetModel, HouseholdInfo, Situation, situation
from services.monthly.core.prophet_map import (
    MapBackend,
    MapFit,
    MapOptions,
    MapProphet,
    model_json,
)
from services.monthly.core.series import (
    DEFAULT_MIN_COVERAGE,
    DailySeries,
    HourlySeries,
    month_end,
    month_start,
)
from shared.schema import DailyPoint, MonthlyForecast

__all__ = [
    "DEFAULT_SETTINGS",
    "FALLBACK_VERSION",
    "Components",
    "ModelSettings",
    "MonthlyResult",
    "daily_profile",
    "fallback_forecast",
    "fit_prophet",
    "forecast_month",
    "point_forecast",
    "predict_mean",
    "stable_seed",
    "warm_start_from_checkpoint",
]

FALLBACK_VERSION: Final = "fallback-trailing-mean-v1"
_QUANTILES: Final = (0.025, 0.10, 0.90, 0.975)
_US_PER_DAY: Final = 86_400_000_000
_MIN_BLOCK_STARTS: Final = 50  # distinct whole-length residual blocks for a block bootstrap
_DIGITS: Final = 4  # 0.1 Wh: stable JSON, far below any meter's resolution

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ModelSettings:
    """How a household's month is forecast (every field changes the model's fingerprint).

    ``history_days``: how many days before the as-of day are fitted (None: all).
    ``min_history_days``: fewer usable days than this and the fallback answers.
    ``uncertainty_samples``: joint sample paths for the intervals (0: point only).
    ``optimizer``: ``"map"`` (in-process, :class:`MapBackend`) or ``"stan"`` (Prophet's
    default cmdstan L-BFGS); ``max_iter``/``tol``: its stopping rule.
    ``yearly_seasonality``: Prophet's switch (``"auto"``: on from two years of history).
    ``trend``: ``"extrapolate"`` Prophet's trend into the forecast days, or ``"hold"`` it at
    its as-of value and add the recent level of the residuals (an exponentially weighted
    mean, half-life ``level_half_life_days``); ``"auto"`` extrapolates only when the model
    has yearly seasonality (see :func:`forecast_month` for why).
    ``residual_scale``: widens the residual blocks of the sample paths (in-sample
    residuals are smaller than out-of-sample errors; calibrated by measurement).
    ``subdaily_days``: how many recent days of sub-daily data fit the daily profile.
    ``use_fleet``: blend the fleet model in (False: Prophet alone with its own intervals,
    the seed's model). The point forecast of the remaining days is a blend by history
    length and by what the fleet model knows (weights chosen on a validation set, see
    :data:`DEFAULT_SETTINGS`). The fleet model's weight grows with its training span
    (:attr:`FleetModel.span_months`, ``fleet_span_default_months`` when its artifact does
    not say): from ``fleet_short_days`` usable days ``fleet_weight_per_month`` x span (at
    most ``fleet_weight_max``) fleet model + the rest Prophet; from ``min_history_days``
    to ``fleet_short_days`` ``fleet_weight_short_per_month`` x (span -
    ``fleet_short_offset_months``) fleet model + the rest split ``prophet_share_short``
    Prophet / the household's recent level (its trailing 28-day mean spread by its
    weekday profile); below ``min_history_days`` (Prophet not fitted) the short weight
    (at most ``fleet_weight_first_max``) fleet model + the rest the recent level.
    ``fleet_weight``, ``fleet_weight_short``/``prophet_weight_short`` and
    ``fleet_weight_first``, when set, fix the weights of their bucket whatever the span
    (for studies and tests).
    The intervals are the fleet model's calibrated band moved with the point, the 95 %
    one's distance from the point scaled by ``band_95_scale`` (the errors' tails are
    heavier than the network's 2.5/97.5 % quantiles say).
    """

    history_days: int | None = None
    min_history_days: int = 28
    min_coverage: float = DEFAULT_MIN_COVERAGE
    uncertainty_samples: int = 500
    optimizer: Literal["map", "stan"] = "map"
    max_iter: int = 100
    tol: float = 1e-5
    yearly_seasonality: bool | Literal["auto"] = "auto"
    weekly_seasonality: bool | Literal["auto"] = "auto"
    changepoint_prior_scale: float = 0.05
    seasonality_prior_scale: float = 10.0
    trend: Literal["auto", "extrapolate", "hold"] = "auto"
    level_half_life_days: float = 5.0
    residual_scale: float = 1.6
    subdaily_days: int = 28
    fallback_window_days: int = 28
    use_fleet: bool = True
    fleet_weight: float | None = None
    fleet_weight_short: float | None = None
    prophet_weight_short: float | None = None
    fleet_weight_first: float | None = None
    fleet_weight_per_month: float = 0.035
    fleet_weight_short_per_month: float = 0.025
    fleet_short_offset_months: float = 2.0
    fleet_weight_max: float = 0.85
    fleet_weight_first_max: float = 0.5
    prophet_share_short: float = 0.5
    fleet_span_default_months: float = 12.0
    fleet_short_days: int = 61
    band_95_scale: float = 1.15
    seed: int = 0

    @property
    def model_version(self) -> str:
        """``prophet-<optimizer>-<short hash of the settings>``: changes when they do."""
        return f"prophet-{self.optimizer}-{self.fingerprint()[:8]}"

    def fingerprint(self) -> str:
        """A stable hash of every setting (part of the input fingerprint of a forecast)."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


DEFAULT_SETTINGS: Final = ModelSettings()
"""The production settings, chosen by measurement (``python -m bench accuracy-monthly
--tune``): one change at a time from the chosen settings, same households, same run.
MAPE: month total, rest-of-month protocol on 60 London households (seed 5, 2013, as-of
days 1/8/15/22, 2,757 forecasts) plus UCI 2010; in80/in95: how often the true month total
fell in the 80 %/95 % interval; ms: CPU per forecast (Stan subprocesses included);
Brownlee: RMSE of the weekly UCI protocol (kW*min) and CPU per weekly fit. Measured with
``level_half_life_days=10``, ``residual_scale=1.0`` except in their own rows::

    configuration                MAPE %  in80 %  in95 %  ms/fcst  Brownlee  ms/fit
    Prophet() defaults            16.37      -       -      70.1     340.0   158.7
    ours (then)                   12.43    62.9    79.6     15.0     340.3    16.7
    optimizer stan lbfgs          12.49    63.4    80.2     41.8     340.1   101.5
    map tol 1e-4                  12.45    63.4    80.2     15.5     340.1    17.0
    map tol 1e-6, 300 it          12.42    62.6    79.6     16.1     340.4    17.2
    map max_iter 20               12.45    62.9    79.7     14.8     340.3    17.8
    history 365 d                 12.45    60.9    78.2     14.9     388.2    14.1
    history 730 d                 12.49    62.8    79.7     14.7     393.2    16.1
    samples 0                     12.43     0.0     0.0     14.3     340.3    18.0
    samples 100                   12.43    61.6    78.1     14.6     340.3    19.6
    samples 200                   12.43    62.9    78.6     14.8     340.3    18.9
    samples 1000                  12.43    62.7    80.0     14.9     340.3    19.6
    trend always extrapolated     16.14    50.7    69.7     15.3     340.3    19.6
    trend always held             12.44    62.8    79.6     14.6     350.5    20.2
    level half-life 5 d           11.64    64.9    80.5     14.9     340.3    18.7
    level half-life 20 d          13.83    58.6    77.0     14.9     340.3    18.3
    residual scale 1.3            12.43    73.2    87.0     14.7     340.3    19.1
    residual scale 1.6            12.43    80.2    90.7     14.8     340.3    20.4
    trailing 28-day mean          12.76

Confirmed on another sample (80 London households, seed 7, with ``residual_scale=1.6``):
level half-life 3/5/7/10 d -> MAPE 8.60/8.38/8.44/8.71 % (trailing mean 8.65 %),
in80/in95 83.7/92.6 % at 5 d.

**Blend weights and the 95 % band** (``fleet_weight``, ``fleet_weight_short``,
``prophet_weight_short``, ``fleet_weight_first``, ``band_95_scale``) were chosen on a
validation set, never on the benchmark's 2013 test months: ``python -m bench
accuracy-monthly --year 2012 --households 60 --short-households 300 --seed 11
--as-of-days 3,10,17,24`` (fleet models retrained every 3 months on earlier months only),
new households of the benchmark's own seed-5 sample left out. MAPE of the month total by
the fleet model's share (the rest Prophet, or the trailing mean where said)::

    history       partner        0     0.1   0.2   0.25  0.3   0.5   1      trailing
    < 28 days     trailing      8.24  8.27  8.31  8.34  8.37  8.50  9.14   8.24
    28-60 days    trailing      6.36  6.29  6.25  6.25  6.26  6.38  7.24   6.36
    28-60 days    Prophet       6.64  6.45  6.31  6.28  6.26  6.33  7.24   6.36
    >= 61 days    Prophet       6.91  6.74  6.64  6.61  6.59  6.78  8.05   7.27

28-60 days, three ways: 0.2 fleet + 0.4 Prophet + 0.4 trailing 6.02 %. The fleet band
moved with the blended point covered 80.5 % (80 %) and 92.1 % (95 %) of the London 2012
totals; scaling the 95 % band's distance from the point by 1.2/1.25/1.3 gave 94.5/-/95.6 %
(new households 94.8/-/95.4 %), hence 1.25.

**The span rule** (``fleet_weight_per_month``, ``fleet_weight_short_per_month``,
``fleet_short_offset_months``, ``fleet_weight_max``, ``fleet_weight_first_max``,
``prophet_share_short``; the fixed weights above are now unset): the fleet model's best
share grew with the months it was trained on. Validation rows of 2012 (models of 7 and
10 months) and January 2014 (``--year 2014 --households 100 --short-households 0 --seed
11 --as-of-days 3,10,17,24``, 25 months), >= 61 days, best fleet share of a blend with
Prophet: ~0.25 / ~0.35 / ~0.9. ``min(0.035 x span, 0.85)`` scores 6.68 / 6.54 / 5.62 %
there (fixed 0.25: 6.67 / 6.55 / 6.75 %); 28-60 days ``min(0.025 x (span - 2), 0.85)``
with the rest half Prophet, half the level: 6.41 / 5.44 % (fixed: 6.47 / 5.44 %). The
band moved with that point covered 80.3 / 94.3 % of London 2012 and 84.7 / 98.1 % of
January 2014 with the 95 % band widened 1.15x, hence ``band_95_scale`` 1.15.

Hence: the in-process MAP optimizer (same accuracy as Stan's L-BFGS, 2.8x less CPU per
forecast, 6x per weekly fit; ``tol=1e-5`` converges in ~10-30 steps, ~3-6 warm);
all history (a shorter window loses the yearly seasonality: Brownlee 388 instead of 340);
500 sample paths (intervals no longer change from 200 up, and the paths cost < 1 ms);
the trend extrapolated only with yearly seasonality (``"auto"``: extrapolating without
it costs 3.7 points of MAPE, holding it with it 10 of Brownlee RMSE); a 5-day level
half-life; residual blocks widened 1.6x, which brings the 80 % interval to its nominal
coverage (the 95 % one stays at ~91-93 %: the errors have heavier tails than a scaled
bootstrap of in-sample residuals).
"""


@dataclass(frozen=True, eq=False)
class Components:
    """What the components plot shows, in the units of the fit.

    ``trend_dates``/``trend`` cover the fitted history and the forecast days
    (``forecast_from`` is the first forecast day); ``observed`` are the usable daily kWh.
    ``weekly`` (Monday first, kWh/day), ``yearly`` (day of year 1..365, kWh/day) and
    ``daily`` (hour 0..23 UTC, kW) are None when not fitted; ``notes`` say why.
    """

    trend_dates: npt.NDArray[np.datetime64]
    trend: FloatArray
    observed_dates: npt.NDArray[np.datetime64]
    observed: FloatArray
    forecast_from: np.datetime64
    weekly: FloatArray | None
    yearly: FloatArray | None
    daily: FloatArray | None
    notes: dict[str, str] = field(default_factory=dict)
    title: str = ""


@dataclass(frozen=True, eq=False)
class MonthlyResult:
    """A forecast, what to plot, the checkpoint to keep and how the fit went.

    ``checkpoint`` (``model_to_json``) and ``params`` (``warm_start_params``, the next
    fit's ``init``) are None for the fallback and when not asked for.
    """

    forecast: MonthlyForecast
    components: Components
    checkpoint: str | None
    fit: MapFit | None
    params: dict[str, Any] | None = None


def stable_seed(*parts: object) -> int:
    """A seed that is the same in every process (``hash()`` is salted per process)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


# ----------------------------------------------------------------------------- Prophet


def _new_prophet(settings: ModelSettings, **overrides: Any) -> Any:
    options: dict[str, Any] = {
        "yearly_seasonality": settings.yearly_seasonality,
        "weekly_seasonality": settings.weekly_seasonality,
        "daily_seasonality": False,
        "changepoint_prior_scale": settings.changepoint_prior_scale,
        "seasonality_prior_scale": settings.seasonality_prior_scale,
        "uncertainty_samples": 0,  # intervals come from our own joint sampler
    }
    options.update(overrides)
    model = MapProphet(**options)  # Prophet, its layout bookkeeping done once (speed)
    if settings.optimizer == "map":
        model.stan_backend = MapBackend(MapOptions(max_iter=settings.max_iter, tol=settings.tol))
    return model


def fit_prophet(
    frame: pd.DataFrame,
    settings: ModelSettings,
    *,
    init: dict[str, Any] | None = None,
    **overrides: Any,
) -> tuple[Any, MapFit | None]:
    """Fit Prophet on a ``(ds, y)`` frame; returns the model and the MAP fit report.

    ``init`` is a warm start (:func:`prophet.utilities.warm_start_params` of an earlier
    model); parameters whose shape does not fit this model are ignored.
    """
    model = _new_prophet(settings, **overrides)
    kwargs: dict[str, Any] = {}
    if init is not None:
        kwargs["init"] = init
    if settings.optimizer == "stan":
        kwargs.update(algorithm="LBFGS", iter=settings.max_iter)
    model.fit(frame, **kwargs)
    backend = model.stan_backend
    return model, backend.last_fit if isinstance(backend, MapBackend) else None


def warm_start_from_checkpoint(checkpoint: str | None) -> dict[str, Any] | None:
    """The warm start of a stored ``model_to_json`` checkpoint, or None if unusable."""
    if not checkpoint:
        return None
    from prophet.serialize import model_from_json
    from prophet.utilities import warm_start_params

    try:
        return dict(warm_start_params(model_from_json(checkpoint)))
    except (ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None


def _days_since_epoch(dates: npt.NDArray[np.datetime64]) -> FloatArray:
    return dates.astype("datetime64[us]").astype(np.int64) / _US_PER_DAY


def _fourier(days: FloatArray, period: float, order: int) -> FloatArray:
    """Prophet's ``fourier_series`` without pandas: columns sin1, cos1, sin2, cos2, ..."""
    angles = 2 * np.pi * np.outer(days, np.arange(1, order + 1)) / period
    out = np.empty((len(days), 2 * order))
    out[:, 0::2] = np.sin(angles)
    out[:, 1::2] = np.cos(angles)
    return out


def _seasonal_blocks(model: Any) -> dict[str, tuple[slice, float, int]]:
    """Where each seasonality's coefficients sit in ``beta`` (Prophet's column order)."""
    blocks: dict[str, tuple[slice, float, int]] = {}
    offset = 0
    for name, props in model.seasonalities.items():
        width = 2 * int(props["fourier_order"])
        blocks[name] = (slice(offset, offset + width), float(props["period"]), width // 2)
        offset += width
    return blocks


def _seasonal(model: Any, name: str, dates: npt.NDArray[np.datetime64]) -> FloatArray | None:
    """One seasonal component at ``dates``, in the data's units (None if not in the model)."""
    blocks = _seasonal_blocks(model)
    if name not in blocks:
        return None
    where, period, order = blocks[name]
    beta = np.asarray(model.params["beta"][0], dtype=np.float64)
    features = _fourier(_days_since_epoch(dates), period, order)
    return np.asarray(features @ beta[where] * model.y_scale, dtype=np.float64)


def _trend(model: Any, dates: npt.NDArray[np.datetime64]) -> tuple[FloatArray, FloatArray]:
    """Prophet's trend at ``dates`` (data units) and the scaled time ``t`` of each date."""
    start = np.datetime64(model.start.to_datetime64(), "us")
    scale_us = model.t_scale / pd.Timedelta(microseconds=1)
    t = (dates.astype("datetime64[us]") - start).astype(np.int64) / scale_us
    k = float(model.params["k"][0][0])
    m = float(model.params["m"][0][0])
    if model.growth == "flat":
        scaled = np.full(len(t), m)
    else:
        deltas = np.asarray(model.params["delta"][0], dtype=np.float64)
        scaled = model.piecewise_linear(t, deltas, k, m, np.asarray(model.changepoints_t))
    return np.asarray(scaled * model.y_scale, dtype=np.float64), t


def predict_mean(model: Any, dates: npt.NDArray[np.datetime64]) -> FloatArray:
    """``yhat`` of a fitted additive Prophet model at ``dates`` (equal to ``model.predict``).

    Why not ``model.predict``: it builds several DataFrames and costs ~11 ms per call
    without uncertainty; this is plain numpy (~0.2 ms) and is checked against it in tests.
    """
    trend, _ = _trend(model, dates)
    total = trend.copy()
    for name in model.seasonalities:
        component = _seasonal(model, name, dates)
        if component is not None:
            total += component
    return total


def _trend_paths(
    model: Any, dates: npt.NDArray[np.datetime64], n_samples: int, rng: np.random.Generator
) -> FloatArray:
    """Draws ``(n_samples, len(dates))`` of the trend's future deviations (Prophet's model).

    Mirrors ``Prophet.sample_predictive_trend_vectorized`` for a linear trend: after the
    last fitted day, slope changes arrive with the historical changepoint rate and a
    Laplace size of the mean fitted change; the trend integrates them. Zero on fitted
    days. Drawn with our own seeded generator (Prophet uses numpy's global state).
    """
    _, t = _trend(model, dates)
    future = t > 1.0
    if model.growth == "flat" or not future.any():
        return np.zeros((n_samples, len(dates)))
    last_fit_day = model.history["ds"].max().to_datetime64().astype("datetime64[D]")
    horizon = int((dates.max().astype("datetime64[D]") - last_fit_day).astype(int))
    step = 86_400 / model.t_scale.total_seconds()  # one day in Prophet's scaled time
    deltas = np.asarray(model.params["delta"][0], dtype=np.float64)
    likelihood = len(model.changepoints_t) * step
    mean_delta = float(np.mean(np.abs(deltas))) + 1e-8
    changes = (rng.uniform(size=(n_samples, horizon)) < likelihood) * rng.laplace(
        0.0, mean_delta, size=(n_samples, horizon)
    )
    shifted = np.hstack([np.zeros((n_samples, 1)), changes])[:, :-1]
    slopes = (shifted + changes) / 2
    offsets = np.cumsum(np.cumsum(slopes, axis=1), axis=1) * step * model.y_scale
    day_index = (dates.astype("datetime64[D]") - last_fit_day).astype(int) - 1
    return np.where(future, offsets[:, np.clip(day_index, 0, horizon - 1)], 0.0)


def _residual_paths(
    residuals: FloatArray, length: int, n_samples: int, rng: np.random.Generator
) -> FloatArray:
    """Block bootstrap: ``n_samples`` runs of ``length`` consecutive fitted-day residuals.

    Why blocks: a household's errors are autocorrelated (a week away, a cold spell, a
    guest), so the error of a 20-day sum is far larger than 20 independent daily errors
    would make it. Consecutive residuals keep that dependence without modelling it;
    their marginal spread gives the daily intervals. Histories shorter than a block
    (plus a week) fall back to independent draws.
    """
    if not length:
        return np.empty((n_samples, 0))
    if len(residuals) < length + 7:
        return rng.choice(residuals, size=(n_samples, length), replace=True)
    if len(residuals) - length + 1 >= _MIN_BLOCK_STARTS:
        starts = rng.integers(0, len(residuals) - length + 1, size=n_samples)
        return residuals[starts[:, None] + np.arange(length)[None, :]]
    # Few whole-length blocks (a month of history has ~10: the intervals collapsed onto
    # a handful of paths): circular weekly blocks instead, many distinct paths.
    blocks = -(-length // 7)
    starts = rng.integers(0, len(residuals), size=(n_samples, blocks))
    index = (starts[:, :, None] + np.arange(7)[None, None, :]) % len(residuals)
    return residuals[index.reshape(n_samples, -1)[:, :length]]


def daily_profile(hourly: HourlySeries | None, settings: ModelSettings) -> FloatArray | None:
    """The daily seasonality (kW by UTC hour 0..23) of recent sub-daily data, or None.

    A Prophet fit on hourly mean power with daily (and, from 14 days, weekly) seasonality;
    needs two days of hours at least. This is where the components plot's daily panel
    comes from; it integrates to ~0 over a day, so it does not change daily totals.
    """
    if hourly is None or len(hourly) < 48:
        return None
    hours = hourly.hours.astype("datetime64[h]")
    keep = hours >= hours.max() - np.timedelta64(24 * settings.subdaily_days, "h")
    frame = pd.DataFrame({"ds": hours[keep].astype("datetime64[ns]"), "y": hourly.kw[keep]})
    span_days = (hours[keep].max() - hours[keep].min()).astype(int) / 24
    if frame["y"].nunique() < 2:
        return None
    model, _ = fit_prophet(
        frame,
        dataclasses.replace(settings, optimizer="map"),
        daily_seasonality=True,
        weekly_seasonality=bool(span_days >= 14),
        yearly_seasonality=False,
    )
    day = np.datetime64("2017-01-02T00", "h") + np.arange(24) * np.timedelta64(1, "h")
    return _seasonal(model, "daily", day)


# --------------------------------------------------------------------------- forecasting


@dataclass(frozen=True)
class _Month:
    """The calendar of one forecast: the month's days and which are known, by position."""

    as_of: dt.date
    days: npt.NDArray[np.datetime64]
    known: npt.NDArray[np.bool_]  # a usable actual (coverage >= min_coverage)
    kwh: FloatArray  # the actual where known, NaN elsewhere

    @classmethod
    def of(cls, series: DailySeries, as_of: dt.date, min_coverage: float) -> _Month:
        """The month of ``as_of``, from the household's first day if it started this month."""
        first = max(month_start(as_of), series.start) if len(series) else month_start(as_of)
        first = min(first, as_of)
        month = series.between(first, month_end(as_of))
        upto = month.dates <= np.datetime64(as_of, "D")
        known = month.usable(min_coverage) & upto
        return cls(as_of, month.dates, known, np.where(known, month.kwh, np.nan))

    @property
    def predicted(self) -> npt.NDArray[np.bool_]:
        return ~self.known

    @property
    def after_as_of(self) -> npt.NDArray[np.bool_]:
        return self.days > np.datetime64(self.as_of, "D")


def _assemble(
    household_id: str,
    month: _Month,
    point: FloatArray,
    paths: FloatArray,
    model_version: str,
    fallback_reason: str | None,
    widen_95: float = 1.0,
) -> MonthlyForecast:
    """The wire model from per-day points and joint sample paths of the predicted days.

    ``widen_95`` scales the 95 % bands' distance from the point (days and total).
    """
    predicted = np.flatnonzero(month.predicted)
    actual = float(np.nansum(month.kwh))
    point = np.maximum(point, 0.0)
    paths = np.maximum(paths, 0.0)
    if paths.shape[0]:
        daily_q = np.quantile(paths, _QUANTILES, axis=0)
        total_q = actual + np.quantile(paths.sum(axis=1), _QUANTILES)
    else:  # no samples: the intervals collapse onto the point
        daily_q = np.tile(point, (len(_QUANTILES), 1))
        total_q = np.full(len(_QUANTILES), actual + point.sum())
    total = actual + float(point.sum())
    if widen_95 != 1.0:
        daily_q[0] = np.maximum(point - widen_95 * (point - daily_q[0]), 0.0)
        daily_q[3] = point + widen_95 * (daily_q[3] - point)
        total_q[0] = max(total - widen_95 * (total - total_q[0]), actual)
        total_q[3] = total + widen_95 * (total_q[3] - total)
    points: list[DailyPoint] = []
    predicted_at = {int(day): i for i, day in enumerate(predicted)}
    for i, day in enumerate(month.days):
        date = day.astype("datetime64[D]").item()
        if month.known[i]:
            v = round(float(month.kwh[i]), _DIGITS)
            points.append(
                DailyPoint(
                    date=date, kwh=v, lower_80=v, upper_80=v, lower_95=v, upper_95=v, is_actual=True
                )
            )
            continue
        j = predicted_at[i]
        v = float(point[j])
        lo95, lo80, hi80, hi95 = (float(q) for q in daily_q[:, j])
        points.append(_point(date, v, lo80, hi80, lo95, hi95))
    rest = float(point[month.after_as_of[predicted]].sum())
    lo95, lo80, hi80, hi95 = (float(q) for q in total_q)
    lo80, lo95 = min(lo80, total), min(lo95, lo80, total)
    hi80, hi95 = max(hi80, total), max(hi95, hi80, total)
    r = _rounded
    return MonthlyForecast(
        household_id=household_id,
        month=month.as_of.strftime("%Y-%m"),
        as_of=month.as_of,
        actual_to_date_kwh=r(actual),
        rest_of_month_kwh=r(rest),
        month_total_kwh=r(total),
        month_total_lower_80=r(lo80),
        month_total_upper_80=r(hi80),
        month_total_lower_95=r(lo95),
        month_total_upper_95=r(hi95),
        daily=points,
        model_version=model_version,
        fallback_reason=fallback_reason,
    )


def _rounded(value: float) -> float:
    return round(value, _DIGITS)


def _point(
    date: dt.date, v: float, lo80: float, hi80: float, lo95: float, hi95: float
) -> DailyPoint:
    """A predicted day; the point is kept inside its own bands (few samples can skew them)."""
    lo80, lo95 = min(lo80, v), min(lo95, lo80, v)
    hi80, hi95 = max(hi80, v), max(hi95, hi80, v)
    r = _rounded
    return DailyPoint(
        date=date,
        kwh=r(v),
        lower_80=r(lo80),
        upper_80=r(hi80),
        lower_95=r(lo95),
        upper_95=r(hi95),
        is_actual=False,
    )


def _training_frame(series: DailySeries, as_of: dt.date, settings: ModelSettings) -> pd.DataFrame:
    known = series.until(as_of)
    if settings.history_days is not None:
        known = known.between(as_of - dt.timedelta(days=settings.history_days - 1), as_of)
    usable = known.usable(settings.min_coverage)
    return pd.DataFrame(
        {"ds": known.dates[usable].astype("datetime64[ns]"), "y": known.kwh[usable]}
    )


def fallback_forecast(
    series: DailySeries,
    as_of: dt.date,
    reason: str,
    settings: ModelSettings = DEFAULT_SETTINGS,
) -> MonthlyResult:
    """Trailing mean of the last usable days per remaining day, empirical intervals.

    The window is the last ``fallback_window_days`` usable days up to ``as_of``; without
    any, the incomplete days scaled to a full day (``kwh / coverage``); without those,
    zero. Intervals: bootstrap sums of the window's days (seeded by household and day).
    """
    known = series.until(as_of)
    usable = known.usable(settings.min_coverage)
    values = known.kwh[usable][-settings.fallback_window_days :]
    if not len(values):
        partial = np.isfinite(known.kwh) & (known.coverage > 0) & (known.kwh >= 0)
        values = (known.kwh[partial] / known.coverage[partial])[-settings.fallback_window_days :]
        if len(values):
            reason = f"{reason}; no complete day: incomplete days scaled to a full day"
    if not len(values):
        values = np.zeros(1)
        reason = f"{reason}; no data at all: zero"
    month = _Month.of(series, as_of, settings.min_coverage)
    n = int(month.predicted.sum())
    point = np.full(n, float(values.mean()))
    rng = np.random.default_rng(stable_seed(settings.seed, series.household_id, as_of))
    samples = max(settings.uncertainty_samples, 200)
    paths = rng.choice(values, size=(samples, n), replace=True) if n else np.empty((samples, 0))
    forecast = _assemble(series.household_id, month, point, paths, FALLBACK_VERSION, reason)
    history = known.usable(settings.min_coverage)
    components = Components(
        trend_dates=np.concatenate([known.dates[history], month.days[month.predicted]]),
        trend=np.concatenate([np.full(int(history.sum()), np.nan), point]),
        observed_dates=known.dates[history],
        observed=known.kwh[history],
        forecast_from=np.datetime64(as_of, "D") + np.timedelta64(1, "D"),
        weekly=None,
        yearly=None,
        daily=None,
        notes={
            "model": f"fallback: {reason}",
            **dict.fromkeys(("weekly", "daily", "yearly"), "fallback model: no components"),
        },
        title=f"{series.household_id} {forecast.month} (fallback)",
    )
    return MonthlyResult(forecast, components, None, None)


def _fallback_reason(frame: pd.DataFrame, settings: ModelSettings) -> str | None:
    if len(frame) < settings.min_history_days:
        return (
            f"short_history: {len(frame)} usable days (coverage >= {settings.min_coverage}), "
            f"fewer than {settings.min_history_days}"
        )
    if float(frame["y"].max() - frame["y"].min()) <= 1e-9 * max(1.0, float(frame["y"].abs().max())):
        return "constant_series: every usable day has the same kWh; nothing to fit"
    return None


@dataclass(frozen=True, eq=False)
class _Fitted:
    """A fitted model and what the forecast needs from it."""

    model: Any
    fit: MapFit | None
    frame: pd.DataFrame
    residuals: FloatArray
    extrapolate: bool


def _fit(
    series: DailySeries, as_of: dt.date, settings: ModelSettings, warm_start: dict[str, Any] | None
) -> _Fitted | str:
    """Fit Prophet on the history up to ``as_of``, or say why the fallback must answer."""
    frame = _training_frame(series, as_of, settings)
    reason = _fallback_reason(frame, settings)
    if reason is not None:
        return reason
    try:
        model, fit = fit_prophet(frame, settings, init=warm_start)
    except (RuntimeError, ValueError, np.linalg.LinAlgError) as error:
        return f"fit_failed: {type(error).__name__}: {error}"
    days = frame["ds"].to_numpy().astype("datetime64[D]")
    residuals = frame["y"].to_numpy(dtype=np.float64) - predict_mean(model, days)
    if not np.all(np.isfinite(residuals)):
        return "fit_failed: non-finite fit"
    extrapolate = settings.trend == "extrapolate" or (
        settings.trend == "auto" and "yearly" in model.seasonalities
    )
    return _Fitted(model, fit, frame, residuals, extrapolate)


def _expected(
    fitted: _Fitted, as_of: dt.date, dates: npt.NDArray[np.datetime64], half_life: float
) -> FloatArray:
    """The point forecast at ``dates``: Prophet's, with the trend held when not extrapolated."""
    mean = predict_mean(fitted.model, dates)
    if fitted.extrapolate:
        return mean
    future, _ = _trend(fitted.model, dates)
    now, _ = _trend(fitted.model, np.array([np.datetime64(as_of, "D")]))
    days = fitted.frame["ds"].to_numpy().astype("datetime64[D]")
    age = (np.datetime64(as_of, "D") - days).astype(np.float64)
    # Relative to the newest fitted day, so a household silent for weeks keeps a level.
    weights = 0.5 ** ((age - age.min()) / half_life)
    level = float(np.sum(weights * fitted.residuals) / np.sum(weights))
    return np.asarray(mean - future + now[0] + level, dtype=np.float64)


_DEFAULT_FLEET: Final = "default"


def _resolve_fleet(fleet: FleetModel | str | None, settings: ModelSettings) -> FleetModel | None:
    if not settings.use_fleet or fleet is None:
        return None
    if isinstance(fleet, FleetModel):
        return fleet
    from services.monthly.artifacts import default_fleet_model  # the shipped weights

    return default_fleet_model()


def _fleet_paths(
    fleet: FleetModel, sit: Situation, month: _Month, n: int, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The fleet model's point, paths and the household's recent level on the month's
    predicted days.

    Days after the as-of day come from :meth:`FleetModel.paths` (the level: the trailing
    28-day mean spread by the weekday profile); missing days before it (rare: gaps in
    the month so far) are the household's level with its own noise.
    """
    point_rest, paths_rest = fleet.paths(sit, n, rng)
    predicted = month.predicted
    after = month.after_as_of[predicted]
    point = np.full(int(predicted.sum()), sit.base)
    level = point.copy()
    paths = np.full((paths_rest.shape[0], len(point)), sit.base)
    if (~after).any() and len(sit.noise) >= 2:
        noise = rng.choice(sit.noise, size=(paths.shape[0], int((~after).sum())))
        paths[:, ~after] = sit.base * np.maximum(1.0 + noise, 0.0)
    point[after] = point_rest
    level[after] = sit.base * sit.shape
    paths[:, after] = paths_rest
    return point, paths, level


def blend_weights(
    settings: ModelSettings, span_months: float | None, usable_days: int, prophet: bool
) -> tuple[float, float]:
    """(fleet model, Prophet) weights of the blend; the rest is the recent level.

    The fleet model's weight grows with how many months it was trained on: a model
    trained on a few months has not seen the season ahead (validation, 2012/2014: its
    best share of a 2-way blend with Prophet was ~0.25 at 7 months, ~0.35 at 10, ~0.9
    at 25). See :class:`ModelSettings` for the rule and :data:`DEFAULT_SETTINGS`.
    """
    span = settings.fleet_span_default_months if span_months is None else span_months
    cap = settings.fleet_weight_max
    months = span - settings.fleet_short_offset_months
    short = min(max(settings.fleet_weight_short_per_month * months, 0.0), cap)
    if not prophet:
        if settings.fleet_weight_first is not None:
            return settings.fleet_weight_first, 0.0
        return min(short, settings.fleet_weight_first_max), 0.0
    if usable_days < settings.fleet_short_days:
        if settings.fleet_weight_short is not None:
            return settings.fleet_weight_short, settings.prophet_weight_short or 0.0
        return short, (1.0 - short) * settings.prophet_share_short
    if settings.fleet_weight is not None:
        return settings.fleet_weight, 1.0 - settings.fleet_weight
    wf = min(max(settings.fleet_weight_per_month * span, 0.0), cap)
    return wf, 1.0 - wf


def _blend(
    fleet: FleetModel,
    sit: Situation,
    month: _Month,
    prophet: FloatArray | None,
    settings: ModelSettings,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray]:
    """The blended point by history length and the fleet model's training span, spread
    over the days by Prophet's shape where it was fitted, and the fleet model's paths
    moved with it.

    ``prophet``: Prophet's point on the predicted days (None: not fitted). The weights
    are :class:`ModelSettings`'; the band is the fleet model's calibrated one, scaled by
    the ratio of the blended total to the fleet model's (it sets the width relative to
    the level, which the blend leaves alone).
    """
    point, paths, level = _fleet_paths(fleet, sit, month, settings.uncertainty_samples, rng)
    wf, wp = blend_weights(settings, fleet.span_months, sit.usable_days, prophet is not None)
    blended = wf * point + (1.0 - wf - wp) * level
    if prophet is not None and wp > 0:
        blended = blended + wp * np.maximum(prophet, 0.0)
    ratio = blended.sum() / point.sum() if point.sum() > 0 else 1.0
    if prophet is not None and np.maximum(prophet, 0.0).sum() > 0:
        # The blend sets the total; Prophet's fitted weekly/yearly shape spreads it over
        # the days (the fleet model's shape is the recent weekday profile, shrunk).
        shape = np.maximum(prophet, 0.0)
        blended = shape * (blended.sum() / shape.sum())
    return blended, paths * ratio


def forecast_month(
    series: DailySeries,
    as_of: dt.date,
    *,
    settings: ModelSettings = DEFAULT_SETTINGS,
    warm_start: dict[str, Any] | None = None,
    hourly: HourlySeries | None = None,
    checkpoint: bool = True,
    fleet: FleetModel | str | None = _DEFAULT_FLEET,
    info: HouseholdInfo | None = None,
) -> MonthlyResult:
    """Forecast the rest of ``as_of``'s month from the history up to ``as_of`` (inclusive).

    Never raises for bad data: short, empty, constant or unfittable histories get
    :func:`fallback_forecast` with the reason. ``checkpoint=False`` skips serialising the
    model (``model_to_json``), e.g. for backtests.

    **Trend** (chosen by measurement, see :data:`DEFAULT_SETTINGS`): with two years of
    history Prophet fits yearly seasonality, and its trend, extrapolated, is the best
    forecast we measured (UCI). With less, the seasonal swings of the months it has seen
    end up in the trend, and extrapolating that slope over a month is worse than no
    forecast at all (London, 2013: MAPE 12.1 % against 9.3 % for the trailing mean). Then
    the trend is held at its as-of value and the recent level of the residuals is added
    (what Prophet's smooth trend has not caught up with yet).

    **Point and intervals** with a fleet model (the default): the blend by history length
    of :class:`ModelSettings`, with the fleet model's calibrated paths moved to it.
    Without one (``fleet=None`` or ``use_fleet=False``), Prophet alone: joint sample
    paths = the point forecast + Prophet's trend uncertainty (when extrapolated) + a
    block of consecutive in-sample residuals (see :func:`_residual_paths`). Daily bands
    are the paths' daily quantiles, the month total's bands the quantiles of the paths'
    sums.

    Example:
        >>> import datetime as dt, numpy as np
        >>> days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(90)]
        >>> kwh = [10 + 3 * (d.weekday() >= 5) for d in days]
        >>> s = DailySeries.from_days("h1", days, kwh)
        >>> r = forecast_month(s, dt.date(2024, 3, 20), checkpoint=False)
        >>> r.forecast.fallback_reason is None, len(r.forecast.daily)
        (True, 31)
        >>> round(r.forecast.daily[-1].kwh)  # a Sunday
        13
    """
    model = _resolve_fleet(fleet, settings)
    sit = situation(series, as_of, info, min_coverage=settings.min_coverage) if model else None
    fitted = _fit(series, as_of, settings, warm_start)
    month = _Month.of(series, as_of, settings.min_coverage)
    rng = np.random.default_rng(stable_seed(settings.seed, series.household_id, as_of))
    n = settings.uncertainty_samples
    widen = settings.band_95_scale
    if isinstance(fitted, str):
        if model is None or sit is None:
            return fallback_forecast(series, as_of, fitted, settings)
        point, paths = _blend(model, sit, month, None, settings, rng)
        reason = (
            f"{fitted}; Prophet not fitted, forecast by the recent level with the fleet "
            "model's interval"
        )
        result = fallback_forecast(series, as_of, reason, settings)
        forecast = _assemble(series.household_id, month, point, paths, model.version, reason, widen)
        return dataclasses.replace(result, forecast=forecast)
    dates = month.days[month.predicted]
    mean = _expected(fitted, as_of, dates, settings.level_half_life_days)
    if not np.all(np.isfinite(mean)):
        return fallback_forecast(series, as_of, "fit_failed: non-finite forecast", settings)
    if model is not None and sit is not None:
        point, paths = _blend(model, sit, month, mean, settings, rng)
        version = f"{settings.model_version}+{model.version}"
        forecast = _assemble(series.household_id, month, point, paths, version, None, widen)
    else:
        paths = mean + settings.residual_scale * _residual_paths(
            fitted.residuals, len(dates), n, rng
        )
        if fitted.extrapolate:
            paths = paths + _trend_paths(fitted.model, dates, n, rng)
        forecast = _assemble(series.household_id, month, mean, paths, settings.model_version, None)
    components = _components(
        fitted.model, fitted.frame, month, hourly, settings, series.household_id
    )
    from prophet.utilities import warm_start_params

    saved = _checkpoint(fitted.model) if checkpoint else None
    params = dict(warm_start_params(fitted.model))
    return MonthlyResult(forecast, components, saved, fitted.fit, params)


def point_forecast(
    series: DailySeries,
    as_of: dt.date,
    horizon: int,
    *,
    settings: ModelSettings = DEFAULT_SETTINGS,
    warm_start: dict[str, Any] | None = None,
) -> tuple[FloatArray, dict[str, Any] | None, str | None]:
    """The next ``horizon`` days after ``as_of`` (the same model as :func:`forecast_month`):
    values, the warm start for the next fit, and the fallback reason (None: Prophet).
    For backtests.
    """
    fitted = _fit(series, as_of, settings, warm_start)
    start = np.datetime64(as_of, "D") + np.timedelta64(1, "D")
    dates = start + np.arange(horizon).astype("timedelta64[D]")
    if not isinstance(fitted, str):
        from prophet.utilities import warm_start_params

        values = _expected(fitted, as_of, dates, settings.level_half_life_days)
        if np.all(np.isfinite(values)):
            return np.maximum(values, 0.0), dict(warm_start_params(fitted.model)), None
        fitted = "fit_failed: non-finite forecast"
    known = series.until(as_of)
    values = known.kwh[known.usable(settings.min_coverage)][-settings.fallback_window_days :]
    level = float(values.mean()) if len(values) else 0.0
    return np.full(horizon, level), None, fitted


def _checkpoint(model: Any) -> str:
    return model_json(model)  # prophet.serialize.model_to_json, byte for byte


def _components(
    model: Any,
    frame: pd.DataFrame,
    month: _Month,
    hourly: HourlySeries | None,
    settings: ModelSettings,
    household_id: str,
) -> Components:
    history = frame["ds"].to_numpy().astype("datetime64[D]")
    first = history.min()
    last = month.days[-1]
    span = np.arange(first, last + np.timedelta64(1, "D"), dtype="datetime64[D]")
    trend, _ = _trend(model, span)
    week = np.datetime64("2017-01-02", "D") + np.arange(7)  # a Monday
    year = np.datetime64("2017-01-01", "D") + np.arange(365)
    notes: dict[str, str] = {}
    yearly = _seasonal(model, "yearly", year)
    if yearly is None:
        notes["yearly"] = f"not fitted: {len(frame)} days of history (Prophet fits it from 730)"
    daily = None
    try:
        daily = daily_profile(hourly, settings)
    except (RuntimeError, ValueError, np.linalg.LinAlgError) as error:
        notes["daily"] = f"sub-daily fit failed: {error}"
    if daily is None and "daily" not in notes:
        notes["daily"] = "no sub-daily data for this household (daily totals only)"
    return Components(
        trend_dates=span,
        trend=trend,
        observed_dates=history,
        observed=frame["y"].to_numpy(dtype=np.float64),
        forecast_from=np.datetime64(month.as_of, "D") + np.timedelta64(1, "D"),
        weekly=_seasonal(model, "weekly", week),
        yearly=yearly,
        daily=daily,
        notes=notes,
        title=f"{household_id} {month.as_of:%Y-%m}, as of {month.as_of}",
    )
