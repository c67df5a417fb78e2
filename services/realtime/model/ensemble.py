"""Day-ahead ensemble: a seasonal-profile regression, an MLP and the LSTM, averaged.

Why: at one day ahead and 15 minutes, household load is mostly unpredictable spikes;
what *is* predictable is the household's habit (its mean load per local day of week and
time of day) scaled to its recent level. A sequence model has to rediscover that habit
from four days of input; a profile learned from the whole training period carries it
directly. So the ensemble has three members, each a direct multi-horizon forecaster:

* **profile regression** (:class:`ProfileRegression`, NumPy only): per horizon step a
  ridge regression on the seasonal profile of the target bin (the training period's mean
  load at that local day of week and time of day, and the same over its last year), that
  profile times the input's mean level and times the day of the year (sine/cosine), the
  same time of day on the input's days (smoothed over five bins), the Sunday habit on a
  public holiday, plus the input window summarised (the last four hours as they are,
  four-hour means, day means, the other channels' means) and the origin's calendar.
  Least squares, so it estimates the conditional mean: the point RMSE asks for.
* **MLP** (Keras, mean squared error) on the same regressors: nonlinear interactions of
  level, habit and recent load.
* **LSTM**: the protocol's quantile LSTM, its mean from the quantiles (Swanson's rule).

The regression and the MLP learn from the windows issued near the test origins' time of
day (see ``evaluation.py``). The weights of the average are chosen on a validation slice
of the training period (a grid on the simplex, step 0.05), never on the test; see
:func:`services.realtime.model.evaluation.evaluate_protocol` for the whole procedure.
Everything here is a pure function of arrays: no I/O, seeded where random.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from services.realtime.core.features import MEASUREMENTS

__all__ = [
    "MEMBERS",
    "PER_STEP",
    "SHRINKAGE_GRID",
    "MlpConfig",
    "ProfileRegression",
    "best_weights",
    "calibrated_interval",
    "combine",
    "fit_mlp",
    "fit_profile_regression",
    "fit_profile_regressions",
    "holiday_days",
    "interval_scale",
    "profile_regressors",
    "seasonal_profile",
]

_US_PER_S: Final = 1_000_000
_DAY_S: Final = 86_400
_YEAR_S: Final = 365.25 * _DAY_S
_TARGET: Final = 0  # the target is the first feature column
_RECENT_S: Final = 4 * 3600  # the last four hours enter the regression bin by bin
_BLOCK_S: Final = 4 * 3600  # and the whole window as four-hour means
_LAG_SMOOTH: Final = 2  # the same time of day on the input's days: +-2 bins averaged
_SUNDAY: Final = 6
#: Regressors per target bin (see :func:`profile_regressors`).
PER_STEP: Final = 12
#: The ensemble's members, in the order of :func:`best_weights`'s weights.
MEMBERS: Final = ("profile_regression", "mlp", "lstm")


def _local_days_and_bins(
    starts_us: npt.NDArray[np.int64], resolution_s: int, utc_offset_s: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Local day of week (Monday 0) and bin of the day of each bin start."""
    local = np.asarray(starts_us, dtype=np.int64) // _US_PER_S + utc_offset_s
    return (local // _DAY_S + 3) % 7, (local % _DAY_S) // resolution_s


def seasonal_profile(
    target: npt.NDArray[np.float64],
    starts_us: npt.NDArray[np.int64],
    stop: int,
    *,
    resolution_s: int,
    utc_offset_s: int,
    smooth: int = 1,
) -> npt.NDArray[np.float64]:
    """Mean target per (local day of week, bin of the day) over rows before ``stop``.

    ``(7, bins_per_day)``, missing bins ignored, each cell smoothed with its ``smooth``
    neighbours on either side along the week (a moving mean that wraps Sunday night into
    Monday morning). A cell never observed takes the overall mean.

    >>> starts = np.arange(14 * 24, dtype=np.int64) * 3600 * 1_000_000  # two weeks, hourly
    >>> seasonal_profile(np.ones(len(starts)), starts, len(starts), resolution_s=3600,
    ...                  utc_offset_s=0).shape
    (7, 24)
    """
    per_day = _DAY_S // resolution_s
    y = np.asarray(target[:stop], dtype=np.float64)
    dow, tod = _local_days_and_bins(starts_us[:stop], resolution_s, utc_offset_s)
    ok = ~np.isnan(y)
    if not ok.any():
        raise ValueError("no measured target before stop: cannot learn a profile")
    cell = dow[ok] * per_day + tod[ok]
    sums = np.bincount(cell, weights=y[ok], minlength=7 * per_day)
    counts = np.bincount(cell, minlength=7 * per_day)
    flat = np.where(counts > 0, sums / np.maximum(counts, 1), y[ok].mean())
    if smooth > 0:
        flat = np.mean([np.roll(flat, k) for k in range(-smooth, smooth + 1)], axis=0)
    return flat.reshape(7, per_day)


def profile_regressors(
    features: npt.NDArray[np.float64],
    starts_us: npt.NDArray[np.int64],
    origins: npt.NDArray[np.int64],
    profile: npt.NDArray[np.float64],
    *,
    input_steps: int,
    horizon_steps: int,
    resolution_s: int,
    utc_offset_s: int,
    recent_profile: npt.NDArray[np.float64] | None = None,
    holidays: npt.NDArray[np.int64] | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Regressors of each window: ``common (n, k)`` shared by every step, and
    ``per_step (n, horizon, PER_STEP)`` for the target bin itself: its habit (the
    profile), and the habit times the window's mean level, times the day of the year
    (sine, cosine) and times the window's load relative to its own habit (whole window,
    last day); the load at the same time of day on the input's days (their mean, and the
    last day's; each smoothed over five bins, never past the origin); the
    ``recent_profile`` (default: ``profile``) and it times the level; and on a public holiday
    (``holidays``: local day numbers, days since 1970-01-01 on the local clock) the
    Sunday habit and the habit.

    Only the window's inputs (rows before the origin) and the origin's and target bins'
    *timestamps* are read: never a target value.
    """
    per_day = _DAY_S // resolution_s
    recent, block = _RECENT_S // resolution_s, _BLOCK_S // resolution_s
    if input_steps % per_day or input_steps % block or recent > input_steps:
        raise ValueError(f"input_steps must be whole days of {per_day} bins")
    origins = np.asarray(origins, dtype=np.int64)
    n = len(origins)
    window = features[origins[:, None] + np.arange(-input_steps, 0), _TARGET]
    level = window.mean(axis=1, keepdims=True)
    year = 2 * np.pi * (starts_us[origins] // _US_PER_S % _YEAR_S) / _YEAR_S
    seasons = np.column_stack([np.sin(year), np.cos(year)])
    common = np.column_stack(
        [
            window[:, -recent:],
            window.reshape(n, -1, block).mean(axis=2),
            window.reshape(n, -1, per_day).mean(axis=2),
            features[origins, len(MEASUREMENTS) :],
            seasons,
            np.ones((n, 1)),
        ]
    )
    # the other channels (reactive power, voltage, current, sub-meters): where the energy
    # went over the window, its last day and its last four hours
    channels = features[origins[:, None] + np.arange(-input_steps, 0), 1 : len(MEASUREMENTS)]
    common = np.column_stack(
        [
            common,
            channels.mean(axis=1),
            channels[:, -per_day:].mean(axis=1),
            channels[:, -recent:].mean(axis=1),
        ]
    )
    # the window's load relative to the habit of its own bins (a window holding a
    # weekend is compared with the weekend's habit), over all of it and its last day
    back = origins[:, None] + np.arange(-input_steps, 0)
    habit_in = profile[_local_days_and_bins(starts_us[back], resolution_s, utc_offset_s)]
    habitual = np.maximum(habit_in.sum(axis=1, keepdims=True), 1e-6)
    ratio = window.sum(axis=1, keepdims=True) / habitual
    habitual_day = np.maximum(habit_in[:, -per_day:].sum(axis=1, keepdims=True), 1e-6)
    ratio_day = window[:, -per_day:].sum(axis=1, keepdims=True) / habitual_day
    targets = origins[:, None] + np.arange(horizon_steps)
    days, bins = _local_days_and_bins(starts_us[targets], resolution_s, utc_offset_s)
    habit = profile[days, bins]
    recent_habit = (profile if recent_profile is None else recent_profile)[days, bins]
    # the same time of day on each input day, smoothed; indices clipped into the window
    first, last = origins[:, None] - input_steps, origins[:, None] - 1
    same_time = np.stack(
        [
            np.mean(
                [
                    features[np.clip(targets - k * per_day + j, first, last), _TARGET]
                    for j in range(-_LAG_SMOOTH, _LAG_SMOOTH + 1)
                ],
                axis=0,
            )
            for k in range(1, input_steps // per_day + 1)
        ],
        axis=-1,
    )
    local_day = (starts_us[targets] // _US_PER_S + utc_offset_s) // _DAY_S
    holiday = (
        np.isin(local_day, holidays).astype(np.float64)
        if holidays is not None and len(holidays)
        else np.zeros(targets.shape)
    )
    per_step = np.stack(
        [
            habit,
            habit * level,
            habit * seasons[:, :1],
            habit * seasons[:, 1:],
            habit * ratio,
            habit * ratio_day,
            same_time.mean(axis=-1),
            same_time[..., 0],
            recent_habit,
            recent_habit * level,
            holiday * profile[_SUNDAY, bins],
            holiday * habit,
        ],
        axis=-1,
    )
    return common, per_step


def holiday_days(holidays: Iterable[dt.date]) -> npt.NDArray[np.int64]:
    """Local day numbers (days since 1970-01-01) of ``holidays``, for the regressors."""
    epoch = dt.date(1970, 1, 1)
    return np.array(sorted((d - epoch).days for d in holidays), dtype=np.int64)


@dataclass(frozen=True, eq=False)
class ProfileRegression:
    """A fitted profile regression: the profile and one weight vector per horizon step."""

    profile: npt.NDArray[np.float64]
    #: ``(horizon, k + PER_STEP)``: weights of ``[common, per_step[:, h]]`` on scaled columns.
    weights: npt.NDArray[np.float64]
    #: ``(horizon, k + PER_STEP)``: the column scales the weights apply to.
    scales: npt.NDArray[np.float64]
    input_steps: int
    horizon_steps: int
    resolution_s: int
    utc_offset_s: int
    #: The profile over the last ``recent_days`` before ``stop`` (a habit that drifts).
    recent: npt.NDArray[np.float64] | None = None
    #: Local day numbers of public holidays (see :func:`holiday_days`).
    holidays: npt.NDArray[np.int64] | None = None

    def regressors(
        self,
        features: npt.NDArray[np.float64],
        starts_us: npt.NDArray[np.int64],
        origins: npt.NDArray[np.int64],
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        return profile_regressors(
            features,
            starts_us,
            origins,
            self.profile,
            input_steps=self.input_steps,
            horizon_steps=self.horizon_steps,
            resolution_s=self.resolution_s,
            utc_offset_s=self.utc_offset_s,
            recent_profile=self.recent,
            holidays=self.holidays,
        )

    def predict(
        self,
        features: npt.NDArray[np.float64],
        starts_us: npt.NDArray[np.int64],
        origins: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.float64]:
        """Point forecasts ``(len(origins), horizon)`` in the target's unit."""
        common, per_step = self.regressors(features, starts_us, origins)
        k = common.shape[1]
        w = self.weights / self.scales
        return common @ w[:, :k].T + np.einsum("nhj,hj->nh", per_step, w[:, k:])


def _normal_equations(
    common: npt.NDArray[np.float64], per_step: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Every step's ``A_h^T A_h`` and ``A_h^T y_h`` for ``A_h = [common, per_step[:, h]]``,
    block by block (the common block is shared, so it is computed once, with BLAS)."""
    n, horizon, m = per_step.shape
    k = common.shape[1]
    cc = common.T @ common
    cs = (common.T @ per_step.reshape(n, -1)).reshape(k, horizon, m).transpose(1, 0, 2)
    stepwise = per_step.transpose(1, 2, 0)  # (horizon, m, n)
    ss = stepwise @ per_step.transpose(1, 0, 2)
    gram = np.empty((horizon, k + m, k + m))
    gram[:, :k, :k] = cc
    gram[:, :k, k:] = cs
    gram[:, k:, :k] = cs.transpose(0, 2, 1)
    gram[:, k:, k:] = ss
    cross = np.concatenate([(common.T @ y).T, (stepwise @ y.T[:, :, None])[..., 0]], axis=1)
    return gram, cross


#: ``(ridge, pool)`` pairs :func:`fit_profile_regressions` offers the validation slice:
#: the ridge on unit-RMS columns, and how many neighbouring steps on either side share
#: a step's fit (the 96 per-step fits are noisy; neighbours are nearly the same problem).
SHRINKAGE_GRID: Final = tuple(
    (ridge, pool) for ridge in (3e-3, 1e-2, 3e-2, 1e-1) for pool in (0, 2, 4, 8)
)


def fit_profile_regression(
    features: npt.NDArray[np.float64],
    target: npt.NDArray[np.float64],
    starts_us: npt.NDArray[np.int64],
    origins: npt.NDArray[np.int64],
    *,
    ridge: float = 1e-2,
    pool: int = 0,
    **kwargs: Any,
) -> ProfileRegression:
    """One profile regression (see :func:`fit_profile_regressions` for the arguments)."""
    fits = fit_profile_regressions(
        features, target, starts_us, origins, shrinkage=((ridge, pool),), **kwargs
    )
    return fits[(ridge, pool)]


def fit_profile_regressions(
    features: npt.NDArray[np.float64],
    target: npt.NDArray[np.float64],
    starts_us: npt.NDArray[np.int64],
    origins: npt.NDArray[np.int64],
    *,
    stop: int,
    input_steps: int,
    horizon_steps: int,
    resolution_s: int,
    utc_offset_s: int,
    holidays: Iterable[dt.date] = (),
    recent_days: int = 365,
    shrinkage: Iterable[tuple[float, int]] = SHRINKAGE_GRID,
    chunk: int = 8192,
) -> dict[tuple[float, int], ProfileRegression]:
    """Fit on the windows at ``origins`` (all targets before ``stop``, all measured),
    once per ``(ridge, pool)`` of ``shrinkage``; the profiles are learned from rows
    before ``stop`` only (the recent one from the last ``recent_days`` of them).

    Accumulates the normal equations chunk by chunk (memory: one chunk), once for every
    setting, then per setting averages each step's equations with its ``pool`` neighbours
    on either side and solves one small ridge system per step on columns scaled to unit
    RMS (``ridge`` times the window count on the diagonal).
    """
    origins = np.asarray(origins, dtype=np.int64)
    if len(origins) == 0:
        raise ValueError("no training window for the profile regression")
    if (origins + horizon_steps > stop).any():
        raise ValueError("a training target lies at or after stop")
    profile = seasonal_profile(
        target, starts_us, stop, resolution_s=resolution_s, utc_offset_s=utc_offset_s
    )
    begin = max(0, stop - recent_days * (_DAY_S // resolution_s))
    recent = profile
    if not np.isnan(target[begin:stop]).all():
        recent = seasonal_profile(
            target[begin:stop],
            starts_us[begin:stop],
            stop - begin,
            resolution_s=resolution_s,
            utc_offset_s=utc_offset_s,
        )
    shape = (input_steps, horizon_steps, resolution_s, utc_offset_s)
    days = holiday_days(holidays)
    model = ProfileRegression(profile, np.zeros(0), np.zeros(0), *shape, recent, days)
    k = len(model.regressors(features, starts_us, origins[:1])[0][0]) + PER_STEP
    gram = np.zeros((horizon_steps, k, k))
    cross = np.zeros((horizon_steps, k))
    for i in range(0, len(origins), chunk):
        part = origins[i : i + chunk]
        common, per_step = model.regressors(features, starts_us, part)
        y = target[part[:, None] + np.arange(horizon_steps)]
        g, c = _normal_equations(common, per_step, y)
        gram += g
        cross += c
    fits = {}
    for ridge, pool in shrinkage:
        g, c = (_pooled(gram, pool), _pooled(cross, pool)) if pool > 0 else (gram, cross)
        scales = np.sqrt(np.einsum("hii->hi", g) / len(origins))
        scales = np.where(scales > 1e-9, scales, 1.0)
        scaled = g / scales[:, :, None] / scales[:, None, :]
        scaled += ridge * len(origins) * np.eye(k)
        weights = np.linalg.solve(scaled, (c / scales)[..., None])[..., 0]
        fits[(ridge, pool)] = dataclasses.replace(model, weights=weights, scales=scales)
    return fits


def _pooled(blocks: npt.NDArray[np.float64], pool: int) -> npt.NDArray[np.float64]:
    """Each step's normal equations averaged with its ``pool`` neighbours on either side
    (clipped at the ends): step h is fitted on the windows of steps h-pool..h+pool."""
    horizon = len(blocks)
    out = np.empty_like(blocks)
    for h in range(horizon):
        out[h] = blocks[max(0, h - pool) : h + pool + 1].mean(axis=0)
    return out


# --- MLP -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MlpConfig:
    """The MLP member: two ReLU layers with dropout, mean squared error, a seed bag."""

    units: int = 256
    dropout: float = 0.3
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 1e-3
    #: One network per seed, averaged (the single network's variance is its weakness).
    seeds: tuple[int, ...] = (7, 8)


def _mlp_inputs(regressors: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]) -> Any:
    common, per_step = regressors
    return np.column_stack([common, per_step.reshape(len(common), -1)]).astype(np.float32)


def fit_mlp(
    regression: ProfileRegression,
    features: npt.NDArray[np.float64],
    target: npt.NDArray[np.float64],
    starts_us: npt.NDArray[np.int64],
    train: npt.NDArray[np.int64],
    *,
    config: MlpConfig = MlpConfig(),
    val: npt.NDArray[np.int64] | None = None,
    epochs: int | None = None,
) -> tuple[Any, int]:
    """Train the MLP bag on the profile regression's regressors; returns
    ``(predict(origins) -> (n, horizon), epochs)``.

    With ``val`` each network keeps its epoch of lowest validation loss and the returned
    epoch count is their mean (to refit on more data with); without, it trains
    ``epochs`` (default ``config.epochs``) epochs.
    """
    import keras

    from services.realtime.model.training import seed_everything

    horizon = regression.horizon_steps
    x = _mlp_inputs(regression.regressors(features, starts_us, train))
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    x = (x - mean) / std
    y = target[np.asarray(train)[:, None] + np.arange(horizon)].astype(np.float32)
    validation = None
    if val is not None and len(val):
        xv = (_mlp_inputs(regression.regressors(features, starts_us, val)) - mean) / std
        validation = (xv, target[np.asarray(val)[:, None] + np.arange(horizon)].astype(np.float32))
    networks, best = [], []
    for seed in config.seeds:
        seed_everything(seed)
        inputs = keras.Input((x.shape[1],))
        h = inputs
        for _ in range(2):
            h = keras.layers.Dense(config.units, activation="relu")(h)
            h = keras.layers.Dropout(config.dropout, seed=seed)(h)
        net = keras.Model(inputs, keras.layers.Dense(horizon)(h))
        net.compile(keras.optimizers.Adam(config.learning_rate), loss="mse")
        callbacks = []
        if validation is not None:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=config.epochs, restore_best_weights=True
                )
            )
        fit = net.fit(
            x,
            y,
            validation_data=validation,
            epochs=epochs or config.epochs,
            batch_size=config.batch_size,
            callbacks=callbacks,
            shuffle=True,
            verbose=0,
        )
        monitored = fit.history.get("val_loss") or fit.history["loss"]
        best.append(int(np.argmin(monitored)) + 1 if validation is not None else len(monitored))
        networks.append(net)

    def predict(origins: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        z = (_mlp_inputs(regression.regressors(features, starts_us, origins)) - mean) / std
        outs = [np.asarray(net(z, training=False), dtype=np.float64) for net in networks]
        return np.mean(outs, axis=0)

    return predict, max(1, round(float(np.mean(best))))


# --- the average -----------------------------------------------------------------------


def best_weights(
    forecasts: Mapping[str, npt.NDArray[np.floating]],
    actual: npt.NDArray[np.floating],
    step: float = 0.05,
) -> dict[str, float]:
    """Non-negative weights summing to one (a grid of ``step``) with the lowest RMSE.

    >>> a = np.zeros((1, 2)); best_weights({"x": a, "y": a + 2}, a + 0.5)
    {'x': 0.75, 'y': 0.25}
    """
    names = list(forecasts)
    ticks = round(1 / step)
    best: tuple[float, tuple[int, ...]] = (np.inf, ())
    for head in itertools.product(range(ticks + 1), repeat=len(names) - 1):
        if sum(head) > ticks:
            continue
        counts = (*head, ticks - sum(head))
        blend = combine(forecasts, {k: c / ticks for k, c in zip(names, counts, strict=True)})
        rmse = float(np.sqrt(np.mean((blend - actual) ** 2)))
        if rmse < best[0] - 1e-12:
            best = (rmse, counts)
    return {k: c / ticks for k, c in zip(names, best[1], strict=True)}


def combine(
    forecasts: Mapping[str, npt.NDArray[np.floating]], weights: Mapping[str, float]
) -> npt.NDArray[np.float64]:
    """The weighted average of the members' forecasts."""
    return sum(w * np.asarray(forecasts[k], dtype=np.float64) for k, w in weights.items())


def calibrated_interval(
    quantiles: npt.NDArray[np.floating], point: npt.NDArray[np.floating], scale: float
) -> npt.NDArray[np.float64]:
    """Quantiles re-centred on ``point`` (each shifted by ``point`` minus the median) with
    their distances from it multiplied by ``scale``.

    >>> calibrated_interval(np.array([[[1.0, 2.0, 4.0]]]), np.array([[3.0]]), 2.0).tolist()
    [[[1.0, 3.0, 7.0]]]
    """
    q = np.asarray(quantiles, dtype=np.float64)
    middle = q[..., q.shape[-1] // 2 : q.shape[-1] // 2 + 1]
    return np.asarray(point, dtype=np.float64)[..., None] + scale * (q - middle)


def interval_scale(
    quantiles: npt.NDArray[np.floating],
    point: npt.NDArray[np.floating],
    actual: npt.NDArray[np.floating],
    nominal: float,
) -> float:
    """The scale (0.5 to 3, step 0.05) whose re-centred outer quantiles hold the share of
    ``actual`` closest to ``nominal``: the LSTM's interval fitted to the ensemble's point."""
    scales = np.round(np.arange(0.5, 3.0001, 0.05), 2)
    held = []
    for scale in scales:
        q = calibrated_interval(quantiles, point, float(scale))
        held.append(np.mean((actual >= q[..., 0]) & (actual <= q[..., -1])))
    return float(scales[int(np.argmin(np.abs(np.asarray(held) - nominal)))])
