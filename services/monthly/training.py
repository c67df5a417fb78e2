"""Training the fleet model (:mod:`services.monthly.core.fleet_model`) on the London fleet.

``wattstream monthly train --data DIR`` runs :func:`train_from_dataset`: every London
household's daily series, a seeded choice of as-of days per complete month (plus extra
ones in each household's first two months, so short histories are learned, not
guessed), the features :func:`~services.monthly.core.fleet_model.situation` computes in
the service (one implementation), and the ratio of the remaining days' mean to the
household's recent level as the target.

**Honest splits.** ``until``: only samples whose month ends before it are used (the
time split: a model meant for as-of days from ``until`` on never sees them or the weeks
around them). Households are split by a stable hash: ``holdout`` of them are never
trained on (the benchmark reports them apart), ``calibration`` of the rest are kept
for the conformal offsets and for choosing nothing else. Seeded: the same data, seed
and options give the same weights (Keras with op determinism, one thread).

The network: standardised features -> Dense(64, relu) -> Dense(32, relu) -> 5 outputs,
the :data:`~services.monthly.core.fleet_model.LEVELS` quantiles of the ratio. Loss:
the pinball loss of each quantile; the median's is weighted by ``base * days_left /
month_total``, which makes it the month total's absolute percentage error, so the point
minimises the MAPE the benchmark reports.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from services.monthly.core.fleet_model import (
    FEATURES,
    LEVELS,
    FleetModel,
    HouseholdInfo,
    history_bucket,
    situation,
    span_months,
)
from services.monthly.core.series import DailySeries, month_end, month_start

__all__ = [
    "SampleSet",
    "TrainOptions",
    "calibrate",
    "household_samples",
    "household_split",
    "read_household_info",
    "sample_fleet",
    "train",
]

FloatArray = npt.NDArray[np.float64]
N_BUCKETS: Final = 5
MIN_DAILY_KWH: Final = 0.5


@dataclass(frozen=True)
class TrainOptions:
    """What a training run does (every field is recorded in the artifact's ``meta``)."""

    until: dt.date | None = None
    seed: int = 0
    as_of_per_month: int = 4
    first_months_as_of: int = 8
    holdout: float = 0.2
    calibration_days: int = 92
    epochs: int = 6
    batch_size: int = 512
    hidden: tuple[int, ...] = (64, 32)
    learning_rate: float = 2e-3


@dataclass(frozen=True, eq=False)
class SampleSet:
    """Training samples: features, target ratio, loss weight and bookkeeping per row."""

    x: FloatArray
    y: FloatArray
    weight: FloatArray  # base * days_left / month total: the APE of the total per unit of y
    household: npt.NDArray[np.str_]
    as_of: npt.NDArray[np.datetime64]
    month_end: npt.NDArray[np.datetime64]
    usable_days: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.y)

    def take(self, mask: npt.NDArray[np.bool_]) -> SampleSet:
        return SampleSet(
            self.x[mask],
            self.y[mask],
            self.weight[mask],
            self.household[mask],
            self.as_of[mask],
            self.month_end[mask],
            self.usable_days[mask],
        )

    @classmethod
    def concat(cls, parts: Iterable[SampleSet]) -> SampleSet:
        items = list(parts)
        if not items:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in items]) for f in _FIELDS))

    @classmethod
    def empty(cls) -> SampleSet:
        return cls(
            np.empty((0, len(FEATURES))),
            np.empty(0),
            np.empty(0),
            np.empty(0, dtype=str),
            np.empty(0, dtype="datetime64[D]"),
            np.empty(0, dtype="datetime64[D]"),
            np.empty(0, dtype=np.int64),
        )

    def save(self, path: Path) -> None:
        np.savez_compressed(path, **{f: getattr(self, f) for f in _FIELDS})

    @classmethod
    def load(cls, path: Path) -> SampleSet:
        with np.load(path) as data:
            return cls(*(data[f] for f in _FIELDS))


_FIELDS: Final = ("x", "y", "weight", "household", "as_of", "month_end", "usable_days")


def household_split(household_id: str, seed: int = 0) -> float:
    """A stable uniform number in [0, 1) per household: the household split's key."""
    digest = hashlib.sha256(f"{seed}|{household_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


def _months(series: DailySeries) -> list[dt.date]:
    months, day = [], month_start(series.start)
    while day <= series.end:
        months.append(day)
        day = month_end(day) + dt.timedelta(days=1)
    return months


def household_samples(
    series: DailySeries,
    info: HouseholdInfo | None,
    rng: np.random.Generator,
    *,
    as_of_per_month: int = 4,
    first_months_as_of: int = 8,
) -> SampleSet:
    """Samples of one household: random as-of days in each complete month.

    A month counts when every day of it from the household's first day is usable and it
    averages at least :data:`MIN_DAILY_KWH`. In the household's first two months,
    ``first_months_as_of`` more as-of days are drawn (7..60 days of history).
    """
    usable = series.usable()
    rows: list[tuple[FloatArray, float, float, dt.date, dt.date, int]] = []
    for first in _months(series):
        last = month_end(first)
        lo, hi = max(0, series.index_of(first)), series.index_of(last)
        if hi >= len(series) or not usable[lo : hi + 1].all():
            continue
        values = series.kwh[lo : hi + 1]
        if values.mean() < MIN_DAILY_KWH:
            continue
        start = series.start if series.start > first else first
        candidates = [start + dt.timedelta(days=i) for i in range((last - start).days)]
        if not candidates:
            continue
        count = as_of_per_month
        age = (first - month_start(series.start)).days
        if age < 62:
            count += first_months_as_of
        picks = rng.choice(len(candidates), size=min(count, len(candidates)), replace=False)
        total = float(values.sum())
        for k in sorted(picks):
            as_of = candidates[int(k)]
            s = situation(series, as_of, info)
            if s is None:
                continue
            rest = series.kwh[series.index_of(as_of) + 1 : hi + 1]
            y = float(rest.mean()) / s.base
            weight = s.base * len(rest) / total
            rows.append((s.x, y, weight, as_of, last, s.usable_days))
    if not rows:
        return SampleSet.empty()
    return SampleSet(
        np.stack([r[0] for r in rows]),
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows]),
        np.full(len(rows), series.household_id),
        np.array([r[3] for r in rows], dtype="datetime64[D]"),
        np.array([r[4] for r in rows], dtype="datetime64[D]"),
        np.array([r[5] for r in rows], dtype=np.int64),
    )


def read_household_info(path: Path) -> dict[str, HouseholdInfo]:
    """``lcl_informations_households.csv(.gz)``: LCLid -> ACORN group and tariff."""
    frame = pd.read_csv(path, usecols=["LCLid", "stdorToU", "Acorn_grouped"], dtype=str)
    return {
        row.LCLid: HouseholdInfo(
            acorn_group=row.Acorn_grouped if isinstance(row.Acorn_grouped, str) else None,
            tariff=row.stdorToU if isinstance(row.stdorToU, str) else None,
        )
        for row in frame.itertuples(index=False)
    }


def sample_fleet(
    households: Iterable[DailySeries],
    info: Mapping[str, HouseholdInfo],
    *,
    seed: int = 0,
    as_of_per_month: int = 4,
    first_months_as_of: int = 8,
    on_household: Callable[[int], None] | None = None,
) -> SampleSet:
    """Samples of every household; each household's draws are seeded by its id."""
    parts = []
    for done, series in enumerate(households, 1):
        rng = np.random.default_rng([seed, int(household_split(series.household_id) * 2**32)])
        parts.append(
            household_samples(
                series,
                info.get(series.household_id),
                rng,
                as_of_per_month=as_of_per_month,
                first_months_as_of=first_months_as_of,
            )
        )
        if on_household is not None:
            on_household(done)
    return SampleSet.concat(parts)


def roles(samples: SampleSet, options: TrainOptions) -> npt.NDArray[np.str_]:
    """Each sample's role: ``holdout`` (a household never trained on) or ``train``."""
    keys = np.array([household_split(h, options.seed) for h in samples.household])
    return np.where(keys < options.holdout, "holdout", "train")


INFO_FEATURES: Final = tuple(
    i for i, f in enumerate(FEATURES) if f.startswith(("acorn_", "tariff_", "info_"))
)


def mask_info(samples: SampleSet, seed: int, share: float = 0.5) -> SampleSet:
    """Hide the household information of ``share`` of the households (seeded by id).

    Why: the service often does not know a household's ACORN group or tariff (the
    Lambda gets daily summaries only, UCI has neither), so the model must be as good
    without them; it learns both cases from the same households.
    """
    keys = np.array([household_split(h, seed + 7919) for h in samples.household])
    hidden = keys < share
    x = samples.x.copy()
    x[np.ix_(hidden, INFO_FEATURES)] = 0.0
    return SampleSet(x, *(getattr(samples, f) for f in _FIELDS[1:]))


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def train(
    samples: SampleSet,
    options: TrainOptions,
    *,
    on_epoch: Callable[[int, int, float], None] | None = None,
) -> FleetModel:
    """Fit the network on the training households before ``until``; conformalise it out
    of time; return the model (its ``meta`` says how).

    Out of time: a first network trained on the months before the last
    ``calibration_days`` is scored on those last months (which it never saw), and that
    gives the conformal offsets; the shipped network is then trained on every month
    before ``until`` and gets those offsets. Why not households held out of the same
    months: they share the months' weather with the training households, and their
    errors were too small by a third (80 % bands held ~74 % on the next quarter).
    """
    if options.until is not None:
        samples = samples.take(samples.month_end < np.datetime64(options.until, "D"))
    samples = mask_info(samples, options.seed)
    fit = samples.take(roles(samples, options) == "train")
    if len(fit) < 100:
        raise ValueError(
            f"too few samples to train: {len(fit)}"
            + (f" before {options.until}" if options.until else "")
        )
    end = fit.month_end.max() + np.timedelta64(1, "D")
    cal_start = end - np.timedelta64(options.calibration_days, "D")
    early, cal = fit.take(fit.month_end < cal_start), fit.take(fit.month_end >= cal_start)
    if len(early) < 100 or len(cal) < 50:
        raise ValueError(
            f"too few samples to calibrate: {len(early)} before {cal_start}, {len(cal)} after"
        )
    total = 2 * options.epochs

    def report(offset: int) -> Callable[[int, int, float], None] | None:
        if on_epoch is None:
            return None
        return lambda epoch, _, loss: on_epoch(offset + epoch, total, loss)

    first = _fit_network(early, options, report(0))
    offsets = calibrate(first, cal)
    final = _fit_network(fit, options, report(options.epochs))
    meta = {
        "until": options.until.isoformat() if options.until else None,
        "seed": options.seed,
        "samples_train": len(fit),
        "households_train": len(set(fit.household.tolist())),
        "samples_calibration": len(cal),
        "calibration_from": str(cal_start),
        "holdout": options.holdout,
        "epochs": options.epochs,
        "hidden": list(options.hidden),
        "first_month_end": str(fit.month_end.min()),
        "last_month_end": str(fit.month_end.max()),
    }
    meta["span_months"] = span_months(meta["first_month_end"], meta["last_month_end"])
    return FleetModel(final.layers, final.mean, final.scale, offsets, meta)


def _fit_network(
    fit: SampleSet, options: TrainOptions, on_epoch: Callable[[int, int, float], None] | None
) -> FleetModel:
    """The Keras MLP on ``fit`` (seeded, deterministic), as an uncalibrated model."""
    _quiet_tensorflow()
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(options.seed)
    tf.config.experimental.enable_op_determinism()
    with contextlib.suppress(RuntimeError):  # already set in this process
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    mean = fit.x.mean(axis=0)
    scale = fit.x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    x = ((fit.x - mean) / scale).astype(np.float32)
    weight = fit.weight / fit.weight.mean()
    target = np.column_stack([fit.y, weight]).astype(np.float32)
    levels = tf.constant(LEVELS, dtype=tf.float32)
    median = LEVELS.index(0.5)

    def loss(yw: Any, q: Any) -> Any:
        y, w = yw[:, :1], yw[:, 1:2]
        error = y - q
        pinball = tf.maximum(levels * error, (levels - 1.0) * error)
        scaled = tf.concat(
            [
                pinball[:, :median],
                pinball[:, median : median + 1] * w,
                pinball[:, median + 1 :],
            ],
            axis=1,
        )
        return tf.reduce_mean(tf.reduce_sum(scaled, axis=1))

    inputs = keras.Input(shape=(len(FEATURES),))
    h = inputs
    for width in options.hidden:
        h = keras.layers.Dense(width, activation="relu")(h)
    init = keras.initializers.Constant(np.quantile(fit.y, LEVELS).tolist())
    outputs = keras.layers.Dense(len(LEVELS), bias_initializer=init)(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(options.learning_rate), loss=loss)

    class _Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if on_epoch is not None:
                on_epoch(epoch + 1, options.epochs, float((logs or {}).get("loss", np.nan)))

    model.fit(
        x,
        target,
        epochs=options.epochs,
        batch_size=options.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[_Report()],
    )
    layers = tuple(
        (
            np.asarray(layer.get_weights()[0], np.float64),
            np.asarray(layer.get_weights()[1], np.float64),
        )
        for layer in model.layers
        if layer.get_weights()
    )
    return FleetModel(layers, mean, scale, np.zeros((2, N_BUCKETS)), {})


def calibrate(model: FleetModel, cal: SampleSet) -> FloatArray:
    """Split-conformal offsets per band (80 %, 95 %) and history bucket.

    The score of a sample is how far ``y`` lies outside the network's band (negative
    inside); the offset is its finite-sample ``(1 - alpha)`` quantile. Buckets with
    fewer than 100 samples use the pooled offset.
    """
    q = model.raw(cal.x)
    buckets = np.array([history_bucket(int(n)) for n in cal.usable_days])
    offsets = np.zeros((2, N_BUCKETS))
    for band, (lo, hi, alpha) in enumerate(((1, 3, 0.20), (0, 4, 0.05))):
        scores = np.maximum(q[:, lo] - cal.y, cal.y - q[:, hi])
        pooled = _conformal(scores, alpha)
        for b in range(N_BUCKETS):
            chosen = scores[buckets == b]
            offsets[band, b] = _conformal(chosen, alpha) if len(chosen) >= 100 else pooled
    return offsets


def _conformal(scores: FloatArray, alpha: float) -> float:
    n = len(scores)
    level = min(1.0, np.ceil((n + 1) * (1 - alpha)) / n)
    return float(np.quantile(scores, level, method="higher"))


# ------------------------------------------------------------------------ the data set


@dataclass(frozen=True)
class _BlockJob:
    path: str
    info: Mapping[str, HouseholdInfo]
    seed: int
    as_of_per_month: int
    first_months_as_of: int


def _block_samples(job: _BlockJob) -> SampleSet:
    from services.monthly.adapters.datasets import read_lcl_block

    return sample_fleet(
        read_lcl_block(job.path),
        job.info,
        seed=job.seed,
        as_of_per_month=job.as_of_per_month,
        first_months_as_of=job.first_months_as_of,
    )


def sample_dataset(
    data_dir: Path,
    info: Mapping[str, HouseholdInfo],
    options: TrainOptions,
    *,
    workers: int = 1,
    on_block: Callable[[int, int], None] | None = None,
    max_blocks: int | None = None,
) -> SampleSet:
    """Samples of every household of an LCL ``daily_dataset`` folder, block by block
    (``workers`` processes; the result does not depend on how many). ``max_blocks``
    keeps only the first blocks (a quick run; every block holds ~50 households)."""
    import multiprocessing

    from services.monthly.adapters.datasets import lcl_blocks

    blocks = lcl_blocks(data_dir)[:max_blocks]
    jobs = [
        _BlockJob(str(p), info, options.seed, options.as_of_per_month, options.first_months_as_of)
        for p in blocks
    ]
    results: dict[int, SampleSet] = {}
    if workers <= 1:
        for i, job in enumerate(jobs):
            results[i] = _block_samples(job)
            if on_block is not None:
                on_block(i + 1, len(jobs))
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for done, (i, part) in enumerate(
                pool.imap_unordered(_indexed, list(enumerate(jobs))), 1
            ):
                results[i] = part
                if on_block is not None:
                    on_block(done, len(jobs))
    return SampleSet.concat(results[i] for i in range(len(jobs)))


def _indexed(item: tuple[int, _BlockJob]) -> tuple[int, SampleSet]:
    return item[0], _block_samples(item[1])
