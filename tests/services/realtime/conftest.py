"""Fixtures of the realtime tests: a tiny model spec, the April slice, a tiny trained bundle.

The bundle is a seeded, untrained Keras LSTM with the real input/output contract
(``(batch, input_steps, 11)`` -> ``(batch, horizon, 3)`` scaled), exported as the
trainer exports it (``model.keras``, a fixed-batch ``model.tflite``, metadata.json), so
backend and Lambda tests never depend on the shipped model or on training. Built once
per session, in a temporary directory: no downloads.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.realtime.core.spec import ModelSpec
from services.realtime.model.bundle import ARTIFACTS_DIR, shipped_bundle_dir
from shared.batch import ReadingBatch
from shared.uci import iter_uci
from tests.conftest import APRIL_2007
from tests.services.realtime.fakes import TFLITE_BATCH, tiny_spec


@pytest.fixture(scope="session")
def spec() -> ModelSpec:
    return tiny_spec()


@pytest.fixture(scope="session")
def april() -> ReadingBatch:
    """The shipped real slice: uci-sceaux, April 2007 (39,477 minutes)."""
    return ReadingBatch.concat([chunk.readings for chunk in iter_uci(APRIL_2007)])


def _build_keras(spec: ModelSpec, *, batch_size: int | None = None, unroll: bool = False):  # type: ignore[no-untyped-def]
    import keras

    keras.utils.set_random_seed(11)
    inputs = keras.Input((spec.input_steps, len(spec.features)), batch_size=batch_size)
    x = keras.layers.LSTM(8, unroll=unroll)(inputs)
    x = keras.layers.Dense(spec.horizon_steps * len(spec.quantiles))(x)
    outputs = keras.layers.Reshape((spec.horizon_steps, len(spec.quantiles)))(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, spec: ModelSpec) -> Path:
    """metadata.json, model.keras, model.tflite (batch fixed at 4), model_dynamic.tflite
    (dynamic batch, unrolled LSTM) and saved_model/, all with the same weights."""
    import tensorflow as tf

    bundle = tmp_path_factory.mktemp("bundle") / spec.version
    bundle.mkdir()
    model = _build_keras(spec)
    model.save(bundle / "model.keras")
    fixed = _build_keras(spec, batch_size=TFLITE_BATCH)
    fixed.set_weights(model.get_weights())
    (bundle / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(fixed).convert())
    dynamic = _build_keras(spec, unroll=True)
    dynamic.set_weights(model.get_weights())
    converted = tf.lite.TFLiteConverter.from_keras_model(dynamic).convert()
    (bundle / "model_dynamic.tflite").write_bytes(converted)
    model.export(str(bundle / "saved_model"), verbose=False)
    (bundle / "metadata.json").write_text(spec.model_dump_json(indent=2))
    return bundle


@pytest.fixture(scope="session")
def shipped() -> Path:
    """The trained bundle shipped in the repository; skipped, loudly, until it lands."""
    try:
        return shipped_bundle_dir()
    except FileNotFoundError:
        pytest.skip(f"no shipped model bundle under {ARTIFACTS_DIR} yet")
