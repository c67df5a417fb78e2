"""Fixtures: a tiny model configuration and a bundle written from an untrained model.

An untrained network has random weights, which is all the exporter and the SageMaker
handlers need to be compared against Keras: no test here waits for training unless
training is what it tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.realtime.core.features import FEATURES
from services.realtime.core.spec import ModelSpec
from services.realtime.model.config import ModelConfig

#: Small enough to train on the April slice in seconds.
TINY = ModelConfig(
    resolution_s=900,
    input_steps=16,
    horizon_steps=4,
    units=8,
    patch=2,
    filters=4,
    epochs=3,
    batch_size=128,
    learning_rate=3e-3,
    seed=11,
    version_prefix="tiny",
)


def tiny_spec(version: str = "tiny-20070430-00000000") -> ModelSpec:
    rng = np.random.default_rng(3)
    return ModelSpec(
        version=version,
        resolution_s=TINY.resolution_s,
        input_steps=TINY.input_steps,
        horizon_steps=TINY.horizon_steps,
        feature_mean=tuple(float(v) for v in rng.uniform(0.5, 2.0, len(FEATURES))),
        feature_std=tuple(float(v) for v in rng.uniform(0.5, 2.0, len(FEATURES))),
    )


def raw_windows(spec: ModelSpec, batch: int, seed: int = 0) -> np.ndarray:
    """Plausible raw windows: the spec's means plus noise of its standard deviations."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(batch, spec.input_steps, len(spec.features)))
    return np.asarray(spec.feature_mean) + noise * np.asarray(spec.feature_std)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle (Keras, LiteRT, SavedModel, spec, metrics) of an untrained tiny model."""
    from services.realtime.model.export import write_bundle
    from services.realtime.model.training import build_model, seed_everything

    seed_everything(5)
    spec = tiny_spec()
    model = build_model(TINY)
    out = tmp_path_factory.mktemp("bundles") / spec.version
    return write_bundle(model, spec, {"holdout": {}}, out, saved_model=True)
