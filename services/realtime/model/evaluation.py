"""Accuracy on the UCI household under two published protocols, next to baselines.

Both protocols read the file with :func:`load_uci_bins` (bins are means of the recorded
minutes, missing under 50 % coverage) and follow the gap policy of
:mod:`services.realtime.model.data`: inputs have gaps of up to two hours interpolated
(never towards a target: the last input bin must be measured), windows with a longer
input gap or any missing target are skipped, in training and in test. Targets are never
filled. The file's clock is the Sceaux local clock without DST (UTC+01:00, see
``shared.uci``); "midnight" and "2010" below are on that clock.

**Day-ahead at 15 minutes** (after Gasparin, Lukovic and Alippi, "Deep learning for time
series forecasting: the electric load case", 2019/2022; best published on this data: GRU,
RMSE 0.75 kW, MAE 0.52 kW). Bins of 15 minutes; input the last 4 days (384 bins, all
eleven features); output the next 96 bins (the next day). *Test:* the last 365 days of
the file; one forecast per day, issued at every local midnight from the first midnight
of the test year (2009-11-27 00:00 local) to the last complete day, for the 96 bins of
that day. *Training:* every window (stride one bin) whose 96 targets all end before the
first test midnight; its last tenth (in time) is the validation set that picks the best
epoch. The inputs of a test day reach back into earlier days (that is history, known at
forecast time); no test target is ever a training target or an input of its own window.

**Hourly one-step** (after Kim and Cho, "Predicting residential energy consumption using
CNN-LSTM neural networks", Energy 182, 2019: RMSE 0.596 kW, MAE 0.332 kW at hourly
resolution, trained before 2010, tested on 2010). Bins of one hour; input the last 168
hours (one week); output the next hour. *Test:* one forecast per hour (stride one bin)
for every hour of 2010 in the file (2010-01-01 00:00 to 2010-11-26 20:00 local).
*Training:* every window whose target hour is before 2010.

Baselines, on exactly the same test windows and inputs: persistence (the last input
value for every step), seasonal naive (the value one day earlier: ``y[t - 96]`` at 15
minutes, ``y[t - 24]`` hourly) and linear regression (least squares, one output per
step, on the input window's target values and the origin's calendar features, fitted on
the protocol's training windows).

**Day-ahead ensemble.** On the day-ahead protocol our point forecast is the weighted
average of the LSTM (its mean from the quantiles), a seasonal-profile regression and an
MLP (``services/realtime/model/ensemble.py``); the weights and the interval's width are
chosen on the LSTM's validation slice of the training period (see ``_with_ensemble``),
never on the test year. Each member is scored on the test windows too.

On the hourly protocol our model's point forecast is the LSTM's median (quantile 0.5): the
RMSE and MAE reported for it are the median's. RMSE is minimised by the mean, not the
median, and household load is right-skewed, so the results also carry the LSTM's mean
estimate from the same three quantiles (Swanson's rule, ``0.3 q10 + 0.4 q50 + 0.3 q90``),
reported separately, never instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from services.realtime.core.features import DEFAULT_MAX_GAP_S, MEASUREMENTS
from services.realtime.model.config import ModelConfig
from services.realtime.model.data import BinnedSeries, load_uci_bins
from services.realtime.model.ensemble import (
    MlpConfig,
    best_weights,
    calibrated_interval,
    combine,
    fit_mlp,
    fit_profile_regression,
    fit_profile_regressions,
    interval_scale,
)
from shared.holidays import french_public_holidays
from shared.uci import UCI_UTC_OFFSET

if TYPE_CHECKING:
    from services.realtime.model.training import ProgressFn, TrainedModel

__all__ = [
    "BASELINES",
    "DAY_AHEAD_15MIN",
    "HOURLY_ONE_STEP",
    "PROTOCOLS",
    "Metrics",
    "ProtocolResult",
    "ProtocolWindows",
    "PublishedProtocol",
    "evaluate_protocol",
    "fit_linear",
    "holdout_metrics",
    "linear_forecast",
    "persistence",
    "protocol_windows",
    "run_protocols",
    "score",
    "seasonal_naive",
]

_US_PER_S: Final = 1_000_000
_DAY_S: Final = 86_400
_NEAR_S: Final = 2 * 3600  # the ensemble's members train on windows this near the test time
_TARGET_COLUMN: Final = 0  # the target is the first feature (FEATURES = MEASUREMENTS + ...)
assert MEASUREMENTS[_TARGET_COLUMN] == "global_active_power_kw"


# --- metrics ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Metrics:
    """Errors of point forecasts over every (window, step) pair, in kW."""

    rmse: float
    mae: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"rmse": round(self.rmse, 4), "mae": round(self.mae, 4), "n": self.n}


def score(forecast: npt.NDArray[np.floating], actual: npt.NDArray[np.floating]) -> Metrics:
    """RMSE and MAE of ``forecast`` against ``actual`` (same shape, no NaN)."""
    error = np.asarray(forecast, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    if error.size == 0 or np.isnan(error).any():
        raise ValueError("score needs matching, complete forecasts and actuals")
    return Metrics(float(np.sqrt(np.mean(error**2))), float(np.mean(np.abs(error))), error.size)


def coverage(quantiles: npt.NDArray[np.floating], actual: npt.NDArray[np.floating]) -> float:
    """Share of actuals inside the outermost quantiles ``[q_first, q_last]``."""
    inside = (actual >= quantiles[..., 0]) & (actual <= quantiles[..., -1])
    return float(np.mean(inside))


# --- baselines -------------------------------------------------------------------------


def _ahead(origins: npt.NDArray[np.int64], horizon: int) -> npt.NDArray[np.int64]:
    return np.asarray(origins, dtype=np.int64)[:, None] + np.arange(horizon)


def persistence(
    values: npt.NDArray[np.float64], origins: npt.NDArray[np.int64], horizon: int
) -> npt.NDArray[np.float64]:
    """The last input value, for every step: ``f[i, h] = values[origin_i - 1]``.

    >>> persistence(np.arange(10.0), np.array([4]), 3).tolist()
    [[3.0, 3.0, 3.0]]
    """
    last = np.asarray(values)[np.asarray(origins) - 1]
    return np.repeat(last[:, None], horizon, axis=1)


def seasonal_naive(
    values: npt.NDArray[np.float64], origins: npt.NDArray[np.int64], horizon: int, season: int
) -> npt.NDArray[np.float64]:
    """The value one season earlier, from the inputs only: ``f[i, h] = values[t - k*season]``
    with ``t = origin_i + h`` and the smallest ``k`` that lands before the origin.

    >>> seasonal_naive(np.arange(10.0), np.array([4]), 3, 2).tolist()
    [[2.0, 3.0, 2.0]]
    """
    steps = np.arange(horizon)
    lag = season * (steps // season + 1)
    return np.asarray(values)[_ahead(origins, horizon) - lag]


def _design(
    features: npt.NDArray[np.float64], origins: npt.NDArray[np.int64], lags: int
) -> npt.NDArray[np.float64]:
    """Regressors of a window: its last ``lags`` target values, the origin's calendar, 1."""
    target_lags = features[np.asarray(origins)[:, None] - np.arange(1, lags + 1), _TARGET_COLUMN]
    calendar = features[np.asarray(origins), len(MEASUREMENTS) :]
    return np.column_stack([target_lags, calendar, np.ones(len(origins))])


def fit_linear(
    features: npt.NDArray[np.float64],
    target: npt.NDArray[np.float64],
    origins: npt.NDArray[np.int64],
    lags: int,
    horizon: int,
    *,
    ridge: float = 1e-3,
    chunk: int = 8192,
) -> npt.NDArray[np.float64]:
    """Least-squares weights ``(regressors, horizon)``, one output per step (direct).

    Accumulates the normal equations chunk by chunk (the full file's 100,000 day-ahead
    windows x 389 regressors would be 300 MB at once); a tiny ridge keeps them solvable.
    """
    n_reg = lags + (features.shape[1] - len(MEASUREMENTS)) + 1
    gram = np.zeros((n_reg, n_reg))
    cross = np.zeros((n_reg, horizon))
    for i in range(0, len(origins), chunk):
        part = origins[i : i + chunk]
        a = _design(features, part, lags)
        gram += a.T @ a
        cross += a.T @ target[_ahead(part, horizon)]
    gram += ridge * len(origins) * np.eye(n_reg)
    return np.linalg.solve(gram, cross)


def linear_forecast(
    features: npt.NDArray[np.float64],
    origins: npt.NDArray[np.int64],
    weights: npt.NDArray[np.float64],
    lags: int,
) -> npt.NDArray[np.float64]:
    return _design(features, origins, lags) @ weights


def swanson_mean(
    quantiles: npt.NDArray[np.floating], levels: tuple[float, ...]
) -> npt.NDArray[np.float64]:
    """Swanson's rule: the mean of a skewed distribution from its 10/50/90 % quantiles,
    ``0.3 q10 + 0.4 q50 + 0.3 q90`` (RMSE is minimised by the mean, not the median)."""
    if tuple(levels) != (0.1, 0.5, 0.9):
        raise ValueError("Swanson's rule needs the 0.1/0.5/0.9 quantiles")
    q = np.asarray(quantiles, dtype=np.float64)
    return 0.3 * q[..., 0] + 0.4 * q[..., 1] + 0.3 * q[..., 2]


BASELINES: Final = ("persistence", "seasonal_naive", "linear_regression")


# --- protocols -------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A published result on the same data set."""

    source: str
    model: str
    rmse: float
    mae: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PublishedProtocol:
    """One published evaluation set-up (see the module docstring for the exact windows)."""

    name: str
    title: str
    resolution_s: int
    input_steps: int
    horizon_steps: int
    season_steps: int
    reference: Reference
    goal_rmse: float
    #: ``(series) -> ProtocolWindows``: where training stops and which origins are tested.
    windows: Callable[[BinnedSeries, npt.NDArray[np.float64]], ProtocolWindows]
    #: The protocol's own model (built by the same ``build_model``, sized for it).
    model: ModelConfig
    #: When set, our point forecast is the day-ahead ensemble (see ``ensemble.py``) of
    #: the LSTM, a seasonal-profile regression and this MLP; otherwise the LSTM's median.
    ensemble: MlpConfig | None = None


@dataclass(frozen=True, eq=False)
class ProtocolWindows:
    """Training stops before row ``train_stop`` (no target at or after it is trained on);
    ``test_origins`` are the first target rows of the test windows."""

    train_stop: int
    test_origins: npt.NDArray[np.int64]


def _local_seconds(series: BinnedSeries) -> npt.NDArray[np.int64]:
    offset_s = UCI_UTC_OFFSET // dt.timedelta(seconds=1)
    return series.starts_us // _US_PER_S + offset_s


def _day_ahead_windows(series: BinnedSeries, features: npt.NDArray[np.float64]) -> ProtocolWindows:
    end_us = int(series.starts_us[-1]) + series.resolution_s * _US_PER_S
    test_from = np.searchsorted(series.starts_us, end_us - 365 * _DAY_S * _US_PER_S)
    midnights = np.flatnonzero(_local_seconds(series) % _DAY_S == 0)
    midnights = midnights[midnights >= test_from]
    first = int(midnights[0])
    origins = series.usable_origins(features, 384, 96, midnights)
    return ProtocolWindows(first, origins)


def _hourly_windows(series: BinnedSeries, features: npt.NDArray[np.float64]) -> ProtocolWindows:
    local_2010 = dt.datetime(2010, 1, 1, tzinfo=dt.timezone(UCI_UTC_OFFSET))
    first = series.index_of(local_2010)
    origins = series.usable_origins(features, 168, 1, np.arange(first, len(series)))
    return ProtocolWindows(first, origins)


DAY_AHEAD_15MIN: Final = PublishedProtocol(
    name="day_ahead_15min",
    title="day-ahead, 15 min (4 days in, 96 steps out, last year)",
    resolution_s=900,
    input_steps=384,
    horizon_steps=96,
    season_steps=96,
    reference=Reference("Gasparin et al. 2019", "GRU", 0.75, 0.52),
    goal_rmse=0.72,
    windows=_day_ahead_windows,
    model=ModelConfig(
        resolution_s=900,
        input_steps=384,
        horizon_steps=96,
        units=64,
        patch=4,
        filters=32,
        epochs=3,
        version_prefix="lstm15-day-ahead",
    ),
    ensemble=MlpConfig(),
)
HOURLY_ONE_STEP: Final = PublishedProtocol(
    name="hourly_one_step",
    title="hourly one-step (train < 2010, test 2010)",
    resolution_s=3600,
    input_steps=168,
    horizon_steps=1,
    season_steps=24,
    reference=Reference("Kim & Cho 2019", "CNN-LSTM", 0.596, 0.332),
    goal_rmse=0.55,
    windows=_hourly_windows,
    model=ModelConfig(
        resolution_s=3600,
        input_steps=168,
        horizon_steps=1,
        units=48,
        patch=1,
        epochs=10,
        batch_size=128,
        version_prefix="lstm60-one-step",
    ),
)
PROTOCOLS: Final = (DAY_AHEAD_15MIN, HOURLY_ONE_STEP)


def protocol_windows(
    series: BinnedSeries, protocol: PublishedProtocol, max_gap_s: int = DEFAULT_MAX_GAP_S
) -> ProtocolWindows:
    """The protocol's training stop and test origins on ``series`` (see module docstring)."""
    if series.resolution_s != protocol.resolution_s:
        raise ValueError(f"{protocol.name} needs bins of {protocol.resolution_s} s")
    return protocol.windows(series, series.features(max_gap_s))


@dataclass(frozen=True)
class ProtocolResult:
    """Our model and every baseline on one protocol's test windows."""

    protocol: str
    title: str
    test_windows: int
    train_windows: int
    #: Our point forecast: the LSTM's median, or the ensemble (see ``point``).
    model: Metrics
    #: The LSTM's mean estimated from its quantiles (Swanson's rule), reported alongside.
    mean_estimate: Metrics
    #: Share of actuals inside the outermost quantiles of our forecast (nominal 0.8).
    coverage: float
    baselines: dict[str, Metrics]
    reference: Reference
    goal_rmse: float
    train_seconds: float
    epochs_run: int
    best_epoch: int
    config: ModelConfig
    #: ``"median"`` (the LSTM's) or ``"ensemble"``.
    point: str = "median"
    #: With the ensemble: each member on the test windows, the LSTM's median too.
    members: dict[str, Metrics] = dataclasses.field(default_factory=dict)
    #: With the ensemble: the members' weights, chosen on the validation slice.
    weights: dict[str, float] = dataclasses.field(default_factory=dict)
    #: With the ensemble: the LSTM interval's width factor, chosen on the validation slice.
    interval_scale: float = 1.0
    #: With the ensemble: each member and the ensemble on the validation slice.
    validation: dict[str, Metrics] = dataclasses.field(default_factory=dict)
    validation_windows: int = 0
    #: With the ensemble: the profile regression's ``ridge`` and ``pool`` (neighbouring
    #: steps sharing a step's fit), chosen on the validation slice.
    regression_shrinkage: dict[str, float] = dataclasses.field(default_factory=dict)


def baseline_forecasts(
    series: BinnedSeries,
    features: npt.NDArray[np.float64],
    train_origins: npt.NDArray[np.int64],
    test_origins: npt.NDArray[np.int64],
    *,
    input_steps: int,
    horizon_steps: int,
    season_steps: int,
) -> dict[str, npt.NDArray[np.float64]]:
    """Every baseline's forecasts ``(windows, horizon)`` for the test origins."""
    filled = features[:, _TARGET_COLUMN]
    weights = fit_linear(features, series.target, train_origins, input_steps, horizon_steps)
    return {
        "persistence": persistence(filled, test_origins, horizon_steps),
        "seasonal_naive": seasonal_naive(filled, test_origins, horizon_steps, season_steps),
        "linear_regression": linear_forecast(features, test_origins, weights, input_steps),
    }


def evaluate_protocol(
    series: BinnedSeries,
    protocol: PublishedProtocol,
    *,
    config: ModelConfig | None = None,
    seed: int | None = None,
    epochs: int | None = None,
    on_progress: ProgressFn | None = None,
) -> ProtocolResult:
    """Train the protocol's model on its training windows, then score it and the baselines.

    ``config`` defaults to the protocol's own model (same :func:`build_model`, sized for
    the protocol); ``seed``/``epochs`` override it.
    """
    from services.realtime.model.training import forecast_kw, train_model, windows_of

    config = config or protocol.model
    overrides: dict[str, Any] = {}
    if seed is not None:
        overrides["seed"] = seed
    if epochs is not None:
        overrides["epochs"] = epochs
    config = dataclasses.replace(config, **overrides)
    shape = (config.resolution_s, config.input_steps, config.horizon_steps)
    if shape != (protocol.resolution_s, protocol.input_steps, protocol.horizon_steps):
        raise ValueError(f"{protocol.name} needs a model of (resolution, input, horizon) {shape}")
    features = series.features(config.max_gap_s)
    split = protocol.windows(series, features)
    trained = train_model(series, config, stop=split.train_stop, on_progress=on_progress)
    test = split.test_origins
    actual = series.target[_ahead(test, protocol.horizon_steps)]
    quantiles = forecast_kw(trained, windows_of(features, test, protocol.input_steps))
    middle = len(config.quantiles) // 2
    train_origins = series.usable_origins(
        features,
        protocol.input_steps,
        protocol.horizon_steps,
        np.arange(0, split.train_stop - protocol.horizon_steps + 1),
    )
    baselines = baseline_forecasts(
        series,
        features,
        train_origins,
        test,
        input_steps=protocol.input_steps,
        horizon_steps=protocol.horizon_steps,
        season_steps=protocol.season_steps,
    )
    result = ProtocolResult(
        protocol=protocol.name,
        title=protocol.title,
        test_windows=len(test),
        train_windows=trained.train_windows + trained.val_windows,
        model=score(quantiles[..., middle], actual),
        mean_estimate=score(swanson_mean(quantiles, config.quantiles), actual),
        coverage=coverage(quantiles, actual),
        baselines={name: score(f, actual) for name, f in baselines.items()},
        reference=protocol.reference,
        goal_rmse=protocol.goal_rmse,
        train_seconds=trained.seconds,
        epochs_run=trained.epochs_run,
        best_epoch=trained.best_epoch,
        config=config,
    )
    if protocol.ensemble is None:
        return result
    mlp = protocol.ensemble
    if epochs is not None:
        mlp = dataclasses.replace(mlp, epochs=epochs)
    if seed is not None:
        mlp = dataclasses.replace(mlp, seeds=tuple(seed + k for k in range(len(mlp.seeds))))
    return _with_ensemble(
        result, series, features, trained, split, mlp, quantiles, actual, on_progress
    )


def _with_ensemble(
    result: ProtocolResult,
    series: BinnedSeries,
    features: npt.NDArray[np.float64],
    trained: TrainedModel,
    split: ProtocolWindows,
    mlp: MlpConfig,
    quantiles: npt.NDArray[np.float64],
    actual: npt.NDArray[np.float64],
    on_progress: ProgressFn | None,
) -> ProtocolResult:
    """Add the ensemble (see ``ensemble.py``) as our point forecast.

    1. The LSTM's own split of the training windows (``training_origins``: the last tenth
       in time validates) is reused, keeping the windows issued within two hours of the
       test origins' time of day. The profile regression and the MLP are fitted on its
       training part (the profiles from the rows before the validation slice), the MLP's
       epochs and the regression's ridge and step pooling (``SHRINKAGE_GRID``) chosen on
       the validation slice.
    2. The weights are chosen on the validation windows issued at the test origins' time
       of day (midnight here), where every member forecasts from data before the slice
       (the LSTM's and the MLP's epochs were picked on that slice, as is usual).
    3. The regression and the MLP (with those epochs) are refitted on every training
       window, then the weights are applied on the test windows. The LSTM is the one
       already trained. The test period is read only to score.

    The interval is the LSTM's, re-centred on the ensemble (its quantiles shifted by the
    ensemble minus its median) and widened by the factor that makes it hold its nominal
    share on the same validation windows.
    """
    from services.realtime.model.training import (
        TrainProgress,
        forecast_kw,
        training_origins,
        windows_of,
    )

    started = time.perf_counter()
    emit = on_progress or (lambda _: None)
    config = result.config
    shape = {
        "input_steps": config.input_steps,
        "horizon_steps": config.horizon_steps,
        "resolution_s": config.resolution_s,
        "utc_offset_s": UCI_UTC_OFFSET // dt.timedelta(seconds=1),
        "holidays": _uci_holidays(series),
    }
    starts, target = series.starts_us, series.target
    train, val = training_origins(series, config, split.train_stop, features)
    if len(val) == 0:
        raise ValueError("the ensemble needs a validation slice (validation_fraction > 0)")
    day = _DAY_S // series.resolution_s
    test_times = np.unique(split.test_origins % day)
    picked = val[np.isin(val % day, test_times)]
    if len(picked) == 0:
        raise ValueError("no validation window at the test origins' time of day")
    # the regression and the MLP learn from the windows issued near the test origins'
    # time of day (within two hours): one day ahead from midnight is its own problem
    near = _near_times(test_times, day, _NEAR_S // series.resolution_s)
    val_start = int(val[0])
    train, val = train[near(train)], val[near(val)]
    emit(TrainProgress("train", message=f"ensemble: members on {len(train):,} windows"))
    val_actual = target[_ahead(picked, config.horizon_steps)]
    fits = fit_profile_regressions(features, target, starts, train, stop=val_start, **shape)
    on_val_fits = {key: fit.predict(features, starts, picked) for key, fit in fits.items()}
    shrinkage = min(on_val_fits, key=lambda key: score(on_val_fits[key], val_actual).rmse)
    regression = fits[shrinkage]
    mlp_predict, mlp_epochs = fit_mlp(
        regression, features, target, starts, train, config=mlp, val=val
    )
    val_q = forecast_kw(trained, windows_of(features, picked, config.input_steps))
    on_val = {
        "profile_regression": on_val_fits[shrinkage],
        "mlp": mlp_predict(picked),
        "lstm": swanson_mean(val_q, config.quantiles),
    }
    weights = best_weights(on_val, val_actual)
    nominal = config.quantiles[-1] - config.quantiles[0]
    scale = interval_scale(val_q, combine(on_val, weights), val_actual, nominal)
    validation = {k: score(v, val_actual) for k, v in on_val.items()}
    validation["ensemble"] = score(combine(on_val, weights), val_actual)
    emit(
        TrainProgress(
            "train",
            message=f"ensemble: regression (ridge, pool) {shrinkage}, weights {weights} on "
            f"{len(picked)} validation windows; "
            f"refitting on {len(train) + len(val):,} windows ({mlp_epochs} MLP epochs)",
        )
    )
    everything = np.concatenate([train, val])
    ridge, pool = shrinkage
    regression = fit_profile_regression(
        features, target, starts, everything, stop=split.train_stop, ridge=ridge, pool=pool, **shape
    )
    mlp_predict, _ = fit_mlp(
        regression, features, target, starts, everything, config=mlp, epochs=mlp_epochs
    )
    test = split.test_origins
    on_test = {
        "profile_regression": regression.predict(features, starts, test),
        "mlp": mlp_predict(test),
        "lstm": swanson_mean(quantiles, config.quantiles),
    }
    point = combine(on_test, weights)
    members = {k: score(v, actual) for k, v in on_test.items()}
    members["lstm_median"] = result.model
    return dataclasses.replace(
        result,
        model=score(point, actual),
        coverage=coverage(calibrated_interval(quantiles, point, scale), actual),
        point="ensemble",
        members=members,
        weights=weights,
        interval_scale=scale,
        validation=validation,
        validation_windows=len(picked),
        regression_shrinkage={"ridge": ridge, "pool": pool},
        train_seconds=result.train_seconds + time.perf_counter() - started,
    )


def _near_times(
    times: npt.NDArray[np.int64], day: int, span: int
) -> Callable[[npt.NDArray[np.int64]], npt.NDArray[np.bool_]]:
    """``origins -> mask``: origins within ``span`` bins of one of ``times`` (bins of
    the day), on the circle of the day."""

    def mask(origins: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        distance = np.abs((origins[:, None] % day - times[None, :] + day // 2) % day - day // 2)
        return (distance <= span).any(axis=1)

    return mask


def _uci_holidays(series: BinnedSeries) -> frozenset[dt.date]:
    """France's public holidays over the series' years (the UCI house is near Paris)."""
    years = {
        dt.datetime.fromtimestamp(int(us) // _US_PER_S, dt.UTC).year
        for us in (series.starts_us[0], series.starts_us[-1])
    }
    return frozenset().union(
        *(french_public_holidays(y) for y in range(min(years), max(years) + 1))
    )


def run_protocols(
    source: Path,
    *,
    protocols: tuple[PublishedProtocol, ...] = PROTOCOLS,
    seed: int | None = None,
    epochs: int | None = None,
    on_progress: ProgressFn | None = None,
) -> list[ProtocolResult]:
    """Both protocols on one UCI file (it is parsed once per resolution)."""
    results = []
    cache: dict[int, BinnedSeries] = {}
    for protocol in protocols:
        series = cache.get(protocol.resolution_s) or load_uci_bins(source, protocol.resolution_s)
        cache[protocol.resolution_s] = series
        results.append(
            evaluate_protocol(series, protocol, seed=seed, epochs=epochs, on_progress=on_progress)
        )
    return results


def holdout_metrics(trained: TrainedModel, series: BinnedSeries, stop: int) -> dict[str, Any]:
    """The shipped model on every usable window after row ``stop`` (one per bin), with
    persistence and the seasonal naive forecast on the same windows, for ``metrics.json``.
    """
    from services.realtime.model.training import forecast_kw, windows_of

    spec = trained.spec
    started = time.perf_counter()
    features = series.features()
    origins = series.usable_origins(
        features, spec.input_steps, spec.horizon_steps, np.arange(stop, len(series))
    )
    if len(origins) == 0:
        return {"holdout": {"windows": 0}}
    actual = series.target[_ahead(origins, spec.horizon_steps)]
    quantiles = forecast_kw(trained, windows_of(features, origins, spec.input_steps))
    middle = len(spec.quantiles) // 2
    season = _DAY_S // spec.resolution_s
    filled = features[:, _TARGET_COLUMN]
    baselines = {"persistence": persistence(filled, origins, spec.horizon_steps)}
    if season <= spec.input_steps:  # the day-earlier value must be one of the inputs
        baselines["seasonal_naive"] = seasonal_naive(filled, origins, spec.horizon_steps, season)
    return {
        "holdout": {
            "from": dt.datetime.fromtimestamp(
                series.starts_us[stop] / _US_PER_S, dt.UTC
            ).isoformat(),
            "windows": len(origins),
            "model": score(quantiles[..., middle], actual).as_dict(),
            "model_first_step": score(quantiles[:, 0, middle], actual[:, 0]).as_dict(),
            "interval": [spec.quantiles[0], spec.quantiles[-1]],
            "interval_coverage": round(coverage(quantiles, actual), 4),
            "baselines": {k: score(v, actual).as_dict() for k, v in baselines.items()},
            "seconds": round(time.perf_counter() - started, 2),
        }
    }
