"""Training: determinism, learning, progress, and the streaming bundle it writes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from services.realtime.core.spec import ModelSpec
from services.realtime.model.bundle import read_metrics, read_spec
from services.realtime.model.data import load_uci_bins
from services.realtime.model.training import (
    TrainProgress,
    build_model,
    holdout_start,
    model_version,
    train_model,
    train_realtime,
    training_origins,
)
from tests.conftest import APRIL_2007
from tests.services.realtime.model.conftest import TINY


@pytest.fixture(scope="module")
def april() -> object:
    return load_uci_bins(APRIL_2007, 900)


def test_train_model_same_seed_same_weights_and_the_loss_decreases(april) -> None:
    stop = holdout_start(april, 365)
    initial = build_model(TINY).get_weights()  # what seed_everything(TINY.seed) starts from
    first = train_model(april, TINY, stop=stop)
    second = train_model(april, TINY, stop=stop)

    for a, b in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(
        not np.array_equal(a, b) for a, b in zip(first.model.get_weights(), initial, strict=True)
    )
    x = np.random.default_rng(0).normal(size=(5, TINY.input_steps, 11)).astype(np.float32)
    np.testing.assert_array_equal(first.model(x), second.model(x))
    assert first.history == second.history
    assert first.history["loss"][-1] < first.history["loss"][0]
    assert first.spec == second.spec


def test_training_origins_never_train_on_validation_or_holdout_targets(april) -> None:
    stop = holdout_start(april, 365)
    features = april.features()
    train, val = training_origins(april, TINY, stop, features)
    assert len(train) > 0
    assert len(val) > 0
    assert (train + TINY.horizon_steps <= val.min()).all()
    assert (val + TINY.horizon_steps <= stop).all()


def test_build_model_quantiles_never_cross() -> None:
    model = build_model(dataclasses.replace(TINY, quantiles=(0.05, 0.25, 0.5, 0.75, 0.95)))
    x = np.random.default_rng(1).normal(scale=3.0, size=(64, TINY.input_steps, 11))
    out = np.asarray(model(x.astype(np.float32)))
    assert out.shape == (64, TINY.horizon_steps, 5)
    assert (np.diff(out, axis=-1) >= 0).all()


def test_model_version_names_the_date_and_the_weights() -> None:
    model = build_model(TINY)
    when = dt.datetime(2025, 3, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
    version = model_version(model, "lstm15", when)
    assert version.startswith("lstm15-20250302-")
    assert version == model_version(model, "lstm15", when)
    assert len(version.rsplit("-", 1)[1]) == 8


def test_train_realtime_writes_a_bundle_and_reports_progress(tmp_path: Path) -> None:
    events: list[TrainProgress] = []
    report = train_realtime(
        APRIL_2007,
        tmp_path,
        config=TINY,
        epochs=2,
        now=dt.datetime(2025, 1, 2, tzinfo=dt.UTC),
        on_progress=events.append,
    )
    assert report.bundle_dir == tmp_path / report.version
    assert report.version.startswith("tiny-20250102-")
    spec = read_spec(report.bundle_dir)
    assert isinstance(spec, ModelSpec)
    assert spec == report.spec
    assert (spec.input_steps, spec.horizon_steps, spec.resolution_s) == (16, 4, 900)
    metrics = read_metrics(report.bundle_dir)
    assert metrics["holdout"]["windows"] > 0
    assert 0 <= metrics["holdout"]["interval_coverage"] <= 1
    assert metrics["epochs_run"] == 2
    stages = [e.stage for e in events]
    assert stages[0] == "load"
    assert stages[-1] == "done"
    assert {"train", "evaluate", "export"} <= set(stages)
    epoch_ends = [e for e in events if e.stage == "train" and e.val_loss is not None]
    assert [e.epoch for e in epoch_ends] == [1, 2]
