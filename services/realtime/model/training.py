"""Training of the realtime LSTM: multivariate windows in, quantile forecasts out.

Why quantiles (pinball loss on 0.1/0.5/0.9) rather than residual-based intervals: a
household's uncertainty is strongly heteroscedastic (flat at night, wide at the evening
peak), so one network that predicts its own interval per step is both cheaper at inference
(one pass) and better calibrated than a constant residual band. The quantiles cannot
cross: the head predicts the median plus non-negative (softplus) gaps, built from stock
Keras layers only, so ``model.keras`` loads without custom objects.

The same :func:`build_model` makes the shipped streaming model (15-minute bins, one day
in, four hours out) and the larger models of the published protocols (see
``evaluation.py``): an optional strided ``Conv1D`` front end (``patch``: kernel = stride)
shortens the sequence the LSTM walks, which is where the CPU time goes.

Determinism: :func:`train_model` seeds Python, NumPy and TensorFlow and turns on
TensorFlow's op determinism, and the batches are shuffled by a NumPy generator of the same
seed, so the same data, config and seed give the same weights, bit for bit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from services.realtime.core.features import FEATURES
from services.realtime.core.spec import ModelSpec
from services.realtime.model.config import STREAMING, ModelConfig
from services.realtime.model.data import BinnedSeries, load_uci_bins
from services.realtime.model.evaluation import holdout_metrics
from services.realtime.model.export import write_bundle

__all__ = [
    "STREAMING",
    "ModelConfig",
    "TrainProgress",
    "TrainReport",
    "TrainedModel",
    "WindowBatches",
    "build_model",
    "fit_scaler",
    "forecast_kw",
    "holdout_start",
    "model_version",
    "pinball_loss",
    "predict_scaled",
    "seed_everything",
    "train_model",
    "train_realtime",
    "training_origins",
    "windows_of",
]

_US_PER_S: Final = 1_000_000


@dataclass(frozen=True)
class TrainProgress:
    """One progress event for the CLI to render (a stage change, or a step of an epoch)."""

    stage: str  # "load", "train", "evaluate", "export", "done"
    message: str = ""
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None
    val_loss: float | None = None


ProgressFn = Callable[[TrainProgress], None]


def _quiet(_: TrainProgress) -> None:
    return None


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A fitted Keras model with the spec that scales its inputs and outputs."""

    model: keras.Model
    spec: ModelSpec
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int
    train_windows: int
    val_windows: int
    seconds: float


@dataclass(frozen=True)
class TrainReport:
    """What ``wattstream train realtime`` prints: where the bundle is and how good it is."""

    version: str
    bundle_dir: Path
    spec: ModelSpec
    metrics: dict[str, Any]
    train_seconds: float
    total_seconds: float


def fit_scaler(rows: npt.NDArray[np.float64]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-feature mean and standard deviation of the training rows, ignoring missing bins."""
    mean = np.nanmean(rows, axis=0)
    std = np.nanstd(rows, axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def pinball_loss(quantiles: tuple[float, ...]) -> Callable[[Any, Any], Any]:
    """Mean quantile (pinball) loss of ``(batch, horizon, n_quantiles)`` predictions."""
    q = np.asarray(quantiles, dtype=np.float32)

    def loss(y_true: Any, y_pred: Any) -> Any:
        error = keras.ops.expand_dims(y_true, -1) - y_pred
        return keras.ops.mean(keras.ops.maximum(q * error, (q - 1.0) * error), axis=-1)

    return loss


def build_model(config: ModelConfig, n_features: int = len(FEATURES)) -> keras.Model:
    """The network: [strided Conv1D] -> LSTM -> monotone quantile head.

    Output ``(batch, horizon_steps, len(quantiles))`` of the scaled target, ascending in
    the last axis: the middle quantile is predicted directly, each outer one as its
    neighbour minus (below) or plus (above) a softplus gap.
    """
    layers = keras.layers
    horizon, n_q = config.horizon_steps, len(config.quantiles)
    middle = n_q // 2
    inputs = keras.Input((config.input_steps, n_features), name="window")
    x = inputs
    if config.patch > 1:
        x = layers.Conv1D(config.filters, config.patch, strides=config.patch, name="patches")(x)
    x = layers.LSTM(config.units, name="lstm")(x)
    if config.dropout > 0:
        x = layers.Dropout(config.dropout, name="dropout")(x)
    center = layers.Dense(horizon, name="q_mid")(x)
    columns: list[Any] = [center]
    below, above = center, center
    for k in range(middle - 1, -1, -1):
        gap = layers.Dense(horizon, activation="softplus", name=f"gap_{k}")(x)
        below = layers.Subtract(name=f"q_{k}")([below, gap])
        columns.insert(0, below)
    for k in range(middle + 1, n_q):
        gap = layers.Dense(horizon, activation="softplus", name=f"gap_{k}")(x)
        above = layers.Add(name=f"q_{k}")([above, gap])
        columns.append(above)
    stacked = [layers.Reshape((horizon, 1), name=f"col_{k}")(c) for k, c in enumerate(columns)]
    outputs = layers.Concatenate(axis=-1, name="quantiles")(stacked)
    return keras.Model(inputs, outputs, name="lstm_quantiles")


class WindowBatches(keras.utils.PyDataset):
    """Batches of windows cut from one scaled series on the fly (memory: one batch).

    Materialising every training window of the full file at one day of 15-minute input
    would take 400 MB; cutting them per batch costs microseconds. ``seed`` shuffles the
    order every epoch (deterministically); ``seed=None`` keeps time order. Batches are
    all ``batch_size`` long (the remainder is left out of that epoch), unless there are
    fewer windows than that.
    """

    def __init__(
        self,
        x: npt.NDArray[np.float32],
        y: npt.NDArray[np.float32],
        origins: npt.NDArray[np.int64],
        input_steps: int,
        horizon_steps: int,
        batch_size: int,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self._x, self._y = x, y
        self._origins = np.asarray(origins, dtype=np.int64)
        self._back = np.arange(-input_steps, 0)
        self._ahead = np.arange(horizon_steps)
        self._batch_size = batch_size
        self._rng = None if seed is None else np.random.default_rng(seed)
        self._order = self._shuffled()

    def _shuffled(self) -> npt.NDArray[np.int64]:
        return self._origins if self._rng is None else self._rng.permutation(self._origins)

    def __len__(self) -> int:
        # Whole batches only (the shuffle drops a different remainder every epoch): one
        # batch shape means one traced train step instead of two.
        return max(1, len(self._origins) // self._batch_size)

    def __getitem__(self, index: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        origins = self._order[index * self._batch_size : (index + 1) * self._batch_size]
        return self._x[origins[:, None] + self._back], self._y[origins[:, None] + self._ahead]

    def on_epoch_end(self) -> None:
        self._order = self._shuffled()


class _Progress(keras.callbacks.Callback):
    """Forwards Keras' training events to the injected ``on_progress``."""

    def __init__(self, on_progress: ProgressFn, epochs: int, steps: int) -> None:
        super().__init__()
        self._emit, self._epochs, self._steps = on_progress, epochs, steps
        self._epoch = 0
        self._every = max(1, steps // 20)

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._epoch = epoch + 1

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        if (batch + 1) % self._every == 0 or batch + 1 == self._steps:
            self._emit(
                TrainProgress(
                    "train",
                    epoch=self._epoch,
                    epochs=self._epochs,
                    step=batch + 1,
                    steps=self._steps,
                    loss=(logs or {}).get("loss"),
                )
            )

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        self._emit(
            TrainProgress(
                "train",
                message=f"epoch {epoch + 1}/{self._epochs}",
                epoch=epoch + 1,
                epochs=self._epochs,
                step=self._steps,
                steps=self._steps,
                loss=logs.get("loss"),
                val_loss=logs.get("val_loss"),
            )
        )


def seed_everything(seed: int) -> None:
    """Python, NumPy and TensorFlow seeds, and deterministic TensorFlow kernels."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def training_origins(
    series: BinnedSeries, config: ModelConfig, stop: int, features: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Train and validation origins whose targets all lie before row ``stop``.

    The validation windows are the last ``validation_fraction`` of them in time, and the
    training windows end ``horizon_steps`` before the first validation origin, so no
    validation target is ever a training target.
    """
    origins = series.usable_origins(
        features,
        config.input_steps,
        config.horizon_steps,
        np.arange(0, stop - config.horizon_steps + 1, config.origin_stride),
    )
    n_val = int(len(origins) * config.validation_fraction)
    if n_val == 0:
        return origins, origins[:0]
    val = origins[-n_val:]
    train = origins[origins + config.horizon_steps <= val[0]]
    return train, val


def train_model(
    series: BinnedSeries,
    config: ModelConfig,
    *,
    stop: int | None = None,
    on_progress: ProgressFn | None = None,
    version: str = "untrained",
) -> TrainedModel:
    """Fit a model on the windows of ``series`` whose targets end before row ``stop``.

    The scaler is fitted on the rows before ``stop`` only; the epoch with the lowest
    validation loss is kept.
    """
    started = time.perf_counter()
    stop = len(series) if stop is None else stop
    if series.resolution_s != config.resolution_s:
        raise ValueError(f"series at {series.resolution_s} s, model at {config.resolution_s} s")
    seed_everything(config.seed)
    features = series.features(config.max_gap_s)
    mean, std = fit_scaler(features[:stop])
    spec = ModelSpec(
        version=version,
        resolution_s=config.resolution_s,
        input_steps=config.input_steps,
        horizon_steps=config.horizon_steps,
        quantiles=config.quantiles,
        feature_mean=mean,
        feature_std=std,
    )
    x = spec.scale(features)
    y = ((series.target - mean[spec.target_index]) / std[spec.target_index]).astype(np.float32)
    train, val = training_origins(series, config, stop, features)
    if len(train) == 0:
        raise ValueError("no complete training window: the data is too short or too gappy")
    batches = WindowBatches(
        x, y, train, config.input_steps, config.horizon_steps, config.batch_size, config.seed
    )
    val_batches = (
        WindowBatches(x, y, val, config.input_steps, config.horizon_steps, config.batch_size)
        if len(val)
        else None
    )
    model = build_model(config, len(spec.features))
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate, clipnorm=1.0),
        loss=pinball_loss(config.quantiles),
    )
    progress = _Progress(on_progress or _quiet, config.epochs, len(batches))
    callbacks: list[keras.callbacks.Callback] = [progress]
    if val_batches is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.epochs, restore_best_weights=True
            )
        )
    fit = model.fit(
        batches,
        validation_data=val_batches,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=0,
        shuffle=False,
    )
    history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
    monitored = history.get("val_loss") or history["loss"]
    return TrainedModel(
        model=model,
        spec=spec,
        history=history,
        epochs_run=len(history["loss"]),
        best_epoch=int(np.argmin(monitored)) + 1,
        train_windows=len(train),
        val_windows=len(val),
        seconds=time.perf_counter() - started,
    )


def predict_scaled(
    model: keras.Model, x: npt.NDArray[np.float32], batch_size: int = 2048
) -> npt.NDArray[np.float32]:
    """Model outputs for scaled windows, in batches, through one traced function."""
    if len(x) == 0:
        return np.zeros((0, *model.output_shape[1:]), dtype=np.float32)
    outputs = [
        np.asarray(model(x[i : i + batch_size], training=False))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outputs).astype(np.float32)


def windows_of(
    features: npt.NDArray[np.float64], origins: npt.NDArray[np.int64], input_steps: int
) -> npt.NDArray[np.float64]:
    """Raw input windows ``(len(origins), input_steps, features)`` ending before each origin."""
    return features[np.asarray(origins)[:, None] + np.arange(-input_steps, 0)]


def forecast_kw(
    trained: TrainedModel | tuple[keras.Model, ModelSpec], windows: npt.NDArray[np.floating]
) -> npt.NDArray[np.float64]:
    """Quantile forecasts in kW for raw windows: the reference every backend must match."""
    model, spec = (trained.model, trained.spec) if isinstance(trained, TrainedModel) else trained
    return spec.unscale_target(predict_scaled(model, spec.scale(windows)))


def model_version(model: keras.Model, prefix: str, when: dt.datetime) -> str:
    """``<prefix>-<YYYYMMDD>-<8 hex of the weights' SHA-256>``: same weights, same name."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights, dtype=np.float32).tobytes())
    return f"{prefix}-{when.astimezone(dt.UTC):%Y%m%d}-{digest.hexdigest()[:8]}"


def train_realtime(
    data: Path,
    out_dir: Path,
    *,
    epochs: int | None = None,
    seed: int | None = None,
    config: ModelConfig = STREAMING,
    holdout_days: int = 365,
    now: dt.datetime | None = None,
    on_progress: ProgressFn = _quiet,
) -> TrainReport:
    """Train the streaming model on a UCI file and write its bundle to ``out_dir/<version>``.

    The last ``holdout_days`` of the file are held out: the model never sees them, and
    ``metrics.json`` reports its errors and interval coverage there next to persistence
    and the seasonal naive forecast. With a short file (the April slice) the hold-out
    shrinks to the last fifth of it.
    """
    data, out_dir = Path(data), Path(out_dir)
    started = time.perf_counter()
    overrides: dict[str, Any] = {}
    if epochs is not None:
        overrides["epochs"] = epochs
    if seed is not None:
        overrides["seed"] = seed
    config = dataclasses.replace(config, **overrides)
    on_progress(TrainProgress("load", message=f"binning {data.name} at {config.resolution_s} s"))
    series = load_uci_bins(data, config.resolution_s)
    stop = holdout_start(series, holdout_days)
    on_progress(TrainProgress("train", message=f"{stop:,} bins for training", epochs=config.epochs))
    trained = train_model(series, config, stop=stop, on_progress=on_progress)
    on_progress(TrainProgress("evaluate", message=f"{len(series) - stop:,} bins held out"))
    metrics = holdout_metrics(trained, series, stop)
    when = now or dt.datetime.now(dt.UTC)
    version = model_version(trained.model, config.version_prefix, when)
    spec = trained.spec.model_copy(update={"version": version})
    metrics.update(
        {
            "version": version,
            "trained_at": when.astimezone(dt.UTC).isoformat(),
            "data": data.name,
            "config": dataclasses.asdict(config),
            "train_windows": trained.train_windows,
            "val_windows": trained.val_windows,
            "epochs_run": trained.epochs_run,
            "best_epoch": trained.best_epoch,
            "history": trained.history,
            "train_seconds": round(trained.seconds, 1),
        }
    )
    on_progress(TrainProgress("export", message=f"writing {version}"))
    bundle = write_bundle(trained.model, spec, metrics, out_dir / version)
    on_progress(TrainProgress("done", message=str(bundle)))
    return TrainReport(
        version=version,
        bundle_dir=bundle,
        spec=spec,
        metrics=json.loads(json.dumps(metrics)),
        train_seconds=trained.seconds,
        total_seconds=time.perf_counter() - started,
    )


def holdout_start(series: BinnedSeries, holdout_days: int) -> int:
    """First row of the hold-out: the last ``holdout_days``, or the last fifth of a series
    too short to keep half of it for training after that."""
    end_us = int(series.starts_us[-1]) + series.resolution_s * _US_PER_S
    by_days = int(np.searchsorted(series.starts_us, end_us - holdout_days * 86_400 * _US_PER_S))
    return by_days if by_days >= len(series) // 2 else len(series) - len(series) // 5
