"""Training of the fleet model: one small network across households (needs TensorFlow).

Why an MLP on engineered windows rather than a sequence model: the useful signal of an
energy-only meter is its own daily profile, which the 7-day same-slot statistics expose
directly; a small MLP shared by the 48 horizon steps corrects the neighbour median of
each slot (pinball loss on 0.1/0.5/0.9, non-crossing head as in
:func:`~services.realtime.model.training.build_model`); it trains in a few minutes on two
cores and serves the whole batch in one LiteRT call.

Honest splits: windows are sampled from the training households and the training period
only; the last ``validation_days`` of it pick the best epoch, and
``calibration_households`` (left out of fitting: new meters, as most of a fleet is)
calibrate the interval widths over the whole training period (a per-household widening
by the window's own spread, :func:`choose_spread_power`, then a conformal scale of each
tail per horizon step), so no test month is ever looked at.

Determinism: :func:`~services.realtime.model.training.seed_everything` (seeds, op
determinism) and a NumPy generator of the same seed for sampling and shuffling: same
data, config and seed -> same weights.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import keras
import numpy as np
import numpy.typing as npt

from services.realtime.core.spec import QUANTILES_DEFAULT
from services.realtime.model.bundle import KERAS_FILE, LITERT_FILE, METADATA_FILE, METRICS_FILE
from services.realtime.model.export import (
    PARITY_TOLERANCE,
    BundleParityError,
    litert_flatbuffer,
    parity,
)
from services.realtime.model.fleet_data import (
    EnergyGrid,
    cut_windows,
    holidays_for,
    load_energy_grid,
)
from services.realtime.model.fleet_features import (
    DAY_BINS,
    HISTORY_DAYS,
    INPUT_BINS,
    SLOT_STATS,
    feature_count,
    fleet_features,
)
from services.realtime.model.fleet_model import (
    FLEET_FILE,
    FleetModel,
    FleetSpec,
    household_widening,
    inner_spec,
)
from services.realtime.model.training import (
    ProgressFn,
    TrainProgress,
    _Progress,
    _quiet,
    model_version,
    pinball_loss,
    seed_everything,
)

__all__ = [
    "FleetConfig",
    "FleetSamples",
    "TrainedFleet",
    "build_fleet_network",
    "calibrate",
    "choose_spread_power",
    "sample_windows",
    "train_fleet",
    "train_fleet_model",
    "write_fleet_bundle",
]

ATTRIBUTION: Final = (
    "Contains data from UK Power Networks' Low Carbon London project, via the London "
    "Datastore (*SmartMeter Energy Consumption Data in London Households*) and the Kaggle "
    "'Smart meters in London' repackaging: half-hourly readings of 100 households in 2013. "
    "The licence is published as open data by the London Datastore; check it there before "
    "publishing anything built on it."
)


@dataclass(frozen=True)
class FleetConfig:
    """Network size and training budget of the fleet model."""

    hidden: tuple[int, ...] = (64, 32)
    epochs: int = 8
    batch_size: int = 128
    learning_rate: float = 1e-3
    #: Training windows sampled per household (random origins in the training period).
    windows_per_household: int = 1200
    #: Share of training windows whose oldest 1-6 days are masked (cold start).
    cold_start_fraction: float = 0.25
    #: The last days of the training period: best epoch (and the intervals when no
    #: household is left out of fitting).
    validation_days: int = 21
    #: Share of the households left out of fitting; their windows over the whole
    #: training period (new meters to the network, every season of it) calibrate the
    #: intervals. 0: calibrate on the validation slice of the fitted households.
    calibration_households: float = 0.2
    #: Calibration windows start every ``calibration_stride`` bins (odd: every time of day).
    calibration_stride: int = 11
    #: Validation windows start every ``validation_stride`` bins.
    validation_stride: int = 5
    quantiles: tuple[float, ...] = QUANTILES_DEFAULT
    #: Weigh each window by its household's level / in-sample seasonal-naive MAE, so the
    #: loss ranks errors as MASE does (a steady household counts as much as a noisy one).
    mase_weights: bool = True
    seed: int = 7
    version_prefix: str = "fleet30"


@dataclass(frozen=True, eq=False)
class FleetSamples:
    """Network inputs and targets of sampled windows (normalised residuals)."""

    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.float32]  # (n, 48): actual / level - base
    level: npt.NDArray[np.float64]
    base: npt.NDArray[np.float64]
    households: npt.NDArray[np.int64]
    spread: npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class TrainedFleet:
    model: keras.Model
    spec: FleetSpec
    metrics: dict[str, Any] = field(default_factory=dict)


def sample_windows(
    grid: EnergyGrid,
    households: npt.ArrayLike,
    origins: npt.ArrayLike,
    holidays: frozenset[int],
    *,
    mask_days: npt.ArrayLike | None = None,
) -> FleetSamples:
    """Features and residual targets of windows; windows with too little history or a
    missing target bin are left out. ``mask_days[i]`` oldest days of window ``i`` are
    hidden (cold-start training)."""
    history, target, issue = cut_windows(grid, households, origins)
    if mask_days is not None:
        hide = np.asarray(mask_days)[:, None] * DAY_BINS > np.arange(INPUT_BINS)
        history = np.where(hide, np.nan, history)
    inputs = fleet_features(history, issue, holidays)
    keep = inputs.ok & ~np.isnan(target).any(axis=1)
    level, base = inputs.level[keep], inputs.base[keep]
    y = target[keep] / level[:, None] - base
    rows = np.asarray(households, dtype=np.int64)[keep]
    return FleetSamples(
        inputs.x[keep], y.astype(np.float32), level, base, rows, inputs.spread[keep]
    )


def build_fleet_network(config: FleetConfig, n_features: int | None = None) -> keras.Model:
    """Input ``(batch, 1, features)`` -> ``(batch, 48, quantiles)`` normalised residuals,
    ascending in the last axis (median plus/minus softplus gaps).

    Per-step and shared: the flat vector is cut back into what belongs to each horizon
    step (that slot on each of the 7 days and its 7 statistics: 14 numbers) and what
    belongs to the window (level, recent level changes, calendar). One small MLP runs on
    every step (Dense layers act on the last axis of ``(batch, 48, .)``); the window part
    enters through a step-specific linear map (per-step bias, time of day and weekday
    effects). Sharing the weights across steps is what beat the 7-day median on the
    validation months (a flat MLP learns 48 separate corrections from the same data).
    """
    layers = keras.layers
    n_features = n_features or feature_count()
    n_q = len(config.quantiles)
    middle = n_q // 2
    per_step = INPUT_BINS + SLOT_STATS * DAY_BINS
    inputs = keras.Input((1, n_features), name="features")
    flat = layers.Flatten(name="flat")(inputs)
    history = layers.Reshape((HISTORY_DAYS, DAY_BINS), name="history_days")(flat[:, :INPUT_BINS])
    stats = layers.Reshape((SLOT_STATS, DAY_BINS), name="slot_stats")(flat[:, INPUT_BINS:per_step])
    slots = layers.Concatenate(axis=1, name="slot_inputs")([history, stats])
    slots = layers.Permute((2, 1), name="per_step")(slots)  # (batch, 48, 14)
    window = flat[:, per_step:]
    first, *rest = config.hidden
    x = layers.Dense(first, name="step_in")(slots)
    context = layers.Dense(DAY_BINS * first, name="window_in")(window)
    context = layers.Reshape((DAY_BINS, first), name="window_per_step")(context)
    x = layers.Activation("relu", name="hidden_0")(layers.Add(name="step_sum")([x, context]))
    for i, units in enumerate(rest, start=1):
        x = layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
    center = layers.Dense(1, name="q_mid")(x)
    columns: list[Any] = [center]
    below, above = center, center
    for k in range(middle - 1, -1, -1):
        gap = layers.Dense(1, activation="softplus", name=f"gap_{k}")(x)
        below = layers.Subtract(name=f"q_{k}")([below, gap])
        columns.insert(0, below)
    for k in range(middle + 1, n_q):
        gap = layers.Dense(1, activation="softplus", name=f"gap_{k}")(x)
        above = layers.Add(name=f"q_{k}")([above, gap])
        columns.append(above)
    outputs = layers.Concatenate(axis=-1, name="quantiles")(columns)
    return keras.Model(inputs, outputs, name="fleet_quantiles")


def calibrate(
    raw: npt.NDArray[np.floating],
    y: npt.NDArray[np.floating],
    quantiles: tuple[float, ...],
    widen: npt.NDArray[np.floating] | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Conformal scales of the lower and upper gaps, one per horizon step, so that on
    these windows ``(n, steps, q)`` each tail of each step holds its nominal share (0.1
    below, 0.1 above by default; split-conformal rank ``ceil((n + 1) p)``).

    >>> raw = np.tile([-1.0, 0.0, 1.0], (200, 2, 1))
    >>> y = np.stack([np.linspace(-2, 2, 200), np.linspace(-1, 1, 200)], axis=1)
    >>> [np.round(s, 1).tolist() for s in calibrate(raw, y, (0.1, 0.5, 0.9))]
    [[1.6, 0.8], [1.6, 0.8]]
    """
    middle = raw.shape[-1] // 2
    center = raw[..., middle]
    low_gap = np.maximum(center - raw[..., 0], 1e-6)
    high_gap = np.maximum(raw[..., -1] - center, 1e-6)
    if widen is not None:
        low_gap = low_gap * widen[:, None]
        high_gap = high_gap * widen[:, None]
    below = (center - y) / low_gap
    above = (y - center) / high_gap
    n = len(y)

    def rank(p: float) -> float:
        return min(1.0, np.ceil((n + 1) * p) / n)

    s_low = np.quantile(below, rank(1.0 - quantiles[0]), axis=0)
    s_high = np.quantile(above, rank(quantiles[-1]), axis=0)
    return np.maximum(s_low, 0.05), np.maximum(s_high, 0.05)


#: Candidate powers of the per-household widening (``FleetSpec.spread_power``).
SPREAD_POWERS: Final = (0.0, 0.25, 0.5, 0.75, 1.0)


def choose_spread_power(
    raw: npt.NDArray[np.floating], samples: FleetSamples, quantiles: tuple[float, ...]
) -> tuple[float, npt.NDArray[np.float64], npt.NDArray[np.float64], dict[str, float]]:
    """The widening power whose calibrated band covers the households most evenly.

    Every candidate is calibrated to the nominal share over all windows (so the fleet
    coverage is the same); what differs is how it spreads between households. The one
    with the smallest spread of per-household coverage (standard deviation) is kept,
    ties to the smaller power. Returns the power, its scales and each candidate's spread.
    """
    middle = raw.shape[-1] // 2
    center = raw[..., middle]
    best: tuple[float, float, Any, Any] = (np.inf, 0.0, None, None)
    report: dict[str, float] = {}
    households = np.unique(samples.households)
    for power in SPREAD_POWERS:
        widen = household_widening(raw, samples.spread, power)
        s_low, s_high = calibrate(raw, samples.y, quantiles, widen)
        lower = center - (center - raw[..., 0]) * s_low * widen[:, None]
        upper = center + (raw[..., -1] - center) * s_high * widen[:, None]
        inside = ((samples.y >= lower) & (samples.y <= upper)).mean(axis=1)
        per = [inside[samples.households == h].mean() for h in households]
        dispersion = float(np.std(per))
        report[str(power)] = round(dispersion, 4)
        if dispersion < best[0] - 1e-4:
            best = (dispersion, power, s_low, s_high)
    return best[1], best[2], best[3], report


def _mase_weights(grid: EnergyGrid, samples: FleetSamples, stop: int) -> npt.NDArray[np.float32]:
    """Per-window loss weights ``level / scale`` (mean 1), ``scale`` = the household's
    seasonal-naive MAE (season 48) before ``stop``: pinball on level-normalised errors
    times this is the MASE of the window."""
    y = grid.kw[:, :stop]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scale = np.nanmean(np.abs(y[:, DAY_BINS:] - y[:, :-DAY_BINS]), axis=1)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, np.nanmedian(scale))
    weight = samples.level / scale[samples.households]
    weight = np.clip(weight, 0.1 * np.median(weight), 10 * np.median(weight))
    return (weight / weight.mean()).astype(np.float32)


def _origins(
    rng: np.random.Generator, households: npt.NDArray[np.int64], lo: int, hi: int, count: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    h = np.repeat(households, count)
    t = rng.integers(lo, hi, size=len(h))
    return h, t


def train_fleet_model(
    grid: EnergyGrid,
    holidays: frozenset[int],
    *,
    households: npt.ArrayLike | None = None,
    stop_bin: int | None = None,
    config: FleetConfig = FleetConfig(),
    on_progress: ProgressFn = _quiet,
) -> TrainedFleet:
    """Train on ``households`` (rows of ``grid``, default all) with every target before
    bin ``stop_bin`` (default: the grid's end); the last ``validation_days`` of that
    period validate and calibrate."""
    started = time.perf_counter()
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    rows = np.arange(len(grid.households)) if households is None else np.asarray(households)
    stop = grid.kw.shape[1] if stop_bin is None else int(stop_bin)
    val_start = stop - config.validation_days * DAY_BINS
    if val_start - DAY_BINS <= INPUT_BINS + DAY_BINS:
        raise ValueError("not enough data: need the validation slice plus 2 days of history")
    on_progress(TrainProgress("load", f"sampling windows of {len(rows)} households"))
    calibration_rows = np.empty(0, dtype=np.int64)
    if config.calibration_households > 0 and len(rows) > 1:
        count = max(1, round(len(rows) * config.calibration_households))
        calibration_rows = np.sort(rng.permutation(rows)[:count])
        rows = np.setdiff1d(rows, calibration_rows)
    h, t = _origins(rng, rows, INPUT_BINS, val_start - DAY_BINS, config.windows_per_household)
    cold = rng.random(len(h)) < config.cold_start_fraction
    mask = np.where(cold, rng.integers(1, HISTORY_DAYS, size=len(h)), 0)
    train = sample_windows(grid, h, t, holidays, mask_days=mask)
    weights = _mase_weights(grid, train, val_start) if config.mase_weights else None
    origins = np.arange(val_start, stop - DAY_BINS + 1, config.validation_stride)
    val = sample_windows(grid, np.repeat(rows, len(origins)), np.tile(origins, len(rows)), holidays)
    calibration = val
    if len(calibration_rows):
        spread = np.arange(INPUT_BINS, stop - DAY_BINS + 1, config.calibration_stride)
        calibration = sample_windows(
            grid,
            np.repeat(calibration_rows, len(spread)),
            np.tile(spread, len(calibration_rows)),
            holidays,
        )
    if not len(train.x) or not len(val.x):
        raise ValueError("no complete training or validation windows in the data")

    model = build_fleet_network(config, train.x.shape[1])
    steps = max(1, len(train.x) // config.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=steps * config.epochs, alpha=0.05
    )
    pinball = pinball_loss(config.quantiles)

    def loss(y_true: Any, y_pred: Any) -> Any:
        # one value per window, so a per-window weight applies (no broadcasting)
        return keras.ops.mean(pinball(y_true, y_pred), axis=-1)

    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss)
    best: dict[str, Any] = {"loss": np.inf, "weights": None, "epoch": 0}

    class _Best(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            loss = (logs or {}).get("val_loss", np.inf)
            if loss < best["loss"]:
                best.update(loss=loss, weights=self.model.get_weights(), epoch=epoch + 1)

    order = rng.permutation(len(train.x))
    history = model.fit(
        train.x[order][:, None, :],
        train.y[order],
        sample_weight=None if weights is None else weights[order],
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(val.x[:, None, :], val.y),
        shuffle=False,
        verbose=0,
        callbacks=[_Progress(on_progress, config.epochs, steps), _Best()],
    )
    model.set_weights(best["weights"])
    on_progress(TrainProgress("evaluate", "calibrating intervals on the calibration households"))
    raw = np.asarray(model(calibration.x[:, None, :], training=False), dtype=np.float64)
    power, s_low, s_high, dispersion = choose_spread_power(raw, calibration, config.quantiles)
    version = model_version(model, config.version_prefix, dt.datetime.now(dt.UTC))
    spec = FleetSpec(
        version=version,
        quantiles=config.quantiles,
        features=int(train.x.shape[1]),
        scale_low=tuple(round(float(s), 6) for s in s_low),
        scale_high=tuple(round(float(s), 6) for s in s_high),
        spread_power=power,
        holidays=tuple(sorted(holidays)),
    )
    served = FleetModel.__new__(FleetModel)
    served.fleet = spec  # to_kw only reads the calibration
    kw = served.to_kw(raw, calibration.base, calibration.level, calibration.spread)
    actual = (calibration.y + calibration.base) * calibration.level[:, None]
    metrics = {
        "train_windows": len(train.x),
        "val_windows": len(val.x),
        "households": len(rows),
        "calibration_households": len(calibration_rows),
        "calibration_windows": len(calibration.x),
        "best_epoch": int(best["epoch"]),
        "history": {k: [round(float(v), 6) for v in vs] for k, vs in history.history.items()},
        "validation": {
            "mae_kw": round(float(np.abs(kw[..., 1] - actual).mean()), 5),
            "mae_neighbour_median_kw": round(
                float(np.abs(calibration.base * calibration.level[:, None] - actual).mean()), 5
            ),
            "coverage_80": round(
                float(((actual >= kw[..., 0]) & (actual <= kw[..., -1])).mean()), 4
            ),
            "scale_low_mean": round(float(np.mean(spec.scale_low)), 6),
            "scale_high_mean": round(float(np.mean(spec.scale_high)), 6),
            "spread_power": power,
            "household_coverage_std": dispersion,
        },
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    return TrainedFleet(model, spec, metrics)


def _readme(spec: FleetSpec, metrics: dict[str, Any]) -> str:
    val = metrics.get("validation", {})
    return "\n".join(
        [
            f"# {spec.version}",
            "",
            "Global (fleet) model of wattstream for energy-only meters: the last 7 days of a "
            "household on a 30-minute grid, normalised by its own level, with calendar and "
            f"UK bank holidays in; {spec.horizon_steps} half-hours of quantiles "
            f"{list(spec.quantiles)} out (kW). Served by "
            "`services.realtime.model.fleet_model.FleetModel`.",
            "Made by `wattstream train fleet --data DIR` "
            "(`services.realtime.model.fleet_training.train_fleet`).",
            f"Households left out of fitting ({metrics.get('calibration_windows')} windows over "
            f"the training period): MAE {val.get('mae_kw')} "
            "kW (median of the slot and its neighbours, 7 days: "
            f"{val.get('mae_neighbour_median_kw')}), 80 % interval coverage "
            f"{val.get('coverage_80')}.",
            "",
            ATTRIBUTION,
            "",
        ]
    )


def write_fleet_bundle(trained: TrainedFleet, bundle_dir: Path) -> Path:
    """Write the bundle atomically; refuses (writes nothing) when LiteRT disagrees with
    Keras beyond :data:`~services.realtime.model.export.PARITY_TOLERANCE`."""
    network_spec = inner_spec(trained.spec)
    flatbuffer = litert_flatbuffer(trained.model)
    worst = parity(trained.model, flatbuffer, network_spec)
    if worst > PARITY_TOLERANCE:
        raise BundleParityError(f"LiteRT differs from Keras by {worst:.2e}")
    bundle_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{bundle_dir.name}.", dir=bundle_dir.parent))
    staging.chmod(0o755)
    try:
        trained.model.save(staging / KERAS_FILE)
        (staging / LITERT_FILE).write_bytes(flatbuffer)
        (staging / METADATA_FILE).write_text(network_spec.model_dump_json(indent=2) + "\n")
        (staging / FLEET_FILE).write_text(trained.spec.model_dump_json(indent=2) + "\n")
        record = {**trained.metrics, "litert_max_abs_diff": worst}
        (staging / METRICS_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        (staging / "README.md").write_text(_readme(trained.spec, trained.metrics))
        if bundle_dir.exists():
            shutil.rmtree(bundle_dir)
        staging.rename(bundle_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return bundle_dir


def train_fleet(
    data: Path,
    out_dir: Path,
    *,
    epochs: int | None = None,
    seed: int | None = None,
    households: int | None = None,
    on_progress: ProgressFn = _quiet,
) -> tuple[Path, TrainedFleet]:
    """``wattstream train fleet``: load ``data`` (the London half-hourly file or its
    folder, with the bank holidays next to it), train on all of it, write the bundle to
    ``out_dir/<version>``."""
    on_progress(TrainProgress("load", f"reading {data}"))
    grid = load_energy_grid(data, households)
    holidays = holidays_for(data, grid)
    config = FleetConfig()
    changes: dict[str, Any] = {}
    if epochs is not None:
        changes["epochs"] = epochs
    if seed is not None:
        changes["seed"] = seed
    config = FleetConfig(**{**asdict(config), **changes})
    trained = train_fleet_model(grid, holidays, config=config, on_progress=on_progress)
    on_progress(TrainProgress("export", "writing Keras and LiteRT"))
    bundle = write_fleet_bundle(trained, out_dir / trained.spec.version)
    on_progress(TrainProgress("done", str(bundle)))
    return bundle, trained
