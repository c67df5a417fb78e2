"""Writing a model bundle: Keras, LiteRT, SavedModel, spec and metrics (layout: bundle.py).

Why the LiteRT export unrolls: the TFLite converter cannot lower Keras 3's LSTM while-loop
with a dynamic batch (``TensorListReserve`` needs a static element shape), and a graph
converted with a fixed batch cannot be resized afterwards (its reshapes bake the batch
in). Converting an unrolled copy of the same network (same weights, ``unroll=True``: the
recurrence becomes a fixed chain of fully-connected ops, which XNNPACK runs well) with
``batch=None`` gives a flatbuffer whose input can be resized to any batch size. Every
bundle is checked on random windows before it is written: LiteRT must agree with Keras.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Final

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from services.realtime.backends import LiteRtModel
from services.realtime.core.spec import ModelSpec
from services.realtime.model.bundle import (
    KERAS_FILE,
    LITERT_FILE,
    METADATA_FILE,
    METRICS_FILE,
    README_FILE,
    SAVED_MODEL_DIR,
    read_spec,
)

__all__ = [
    "PARITY_TOLERANCE",
    "BundleParityError",
    "export_saved_model",
    "litert_flatbuffer",
    "load_keras_model",
    "parity",
    "saved_model_predict",
    "write_bundle",
]

#: Largest accepted difference between Keras and LiteRT outputs (scaled units, ~1e-4 kW).
PARITY_TOLERANCE: Final = 1e-4

ATTRIBUTION: Final = (
    "Trained on the *Individual household electric power consumption* data set by Georges "
    "Hébrail and Alice Bérard, UCI Machine Learning Repository, "
    "DOI [10.24432/C58K54](https://doi.org/10.24432/C58K54), licensed CC BY 4.0."
)


class BundleParityError(RuntimeError):
    """An exported format disagrees with the Keras model beyond the tolerance."""


def unrolled(model: keras.Model) -> keras.Model:
    """The same network and weights with every recurrent layer unrolled."""
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] in {"LSTM", "GRU", "SimpleRNN"}:
            layer["config"]["unroll"] = True
    clone = keras.Model.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def litert_flatbuffer(model: keras.Model) -> bytes:
    """A LiteRT flatbuffer of ``model`` with a resizable batch dimension (float32)."""
    clone = unrolled(model)
    signature = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name="window")
    function = tf.function(lambda window: clone(window, training=False))
    concrete = function.get_concrete_function(signature)
    # Without a trackable object the converter freezes the weights into constants: the
    # flatbuffer holds no resource variables, only builtin ops.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    return bytes(converter.convert())


def export_saved_model(model: keras.Model, path: Path) -> Path:
    """A TensorFlow SavedModel (``serving_default``, dynamic batch) for TF Serving."""
    if path.exists():
        shutil.rmtree(path)
    model.export(str(path), format="tf_saved_model", verbose=False)
    return path


def saved_model_predict(path: Path, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Run a SavedModel's ``serving_default`` on scaled windows (what TF Serving runs)."""
    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]
    outputs = serve(**{name: tf.constant(np.asarray(x, dtype=np.float32))})
    (value,) = outputs.values()
    return np.asarray(value, dtype=np.float32)


def load_keras_model(bundle_dir: Path) -> keras.Model:
    """The bundle's Keras model (stock layers only: no custom objects, no compile)."""
    return keras.saving.load_model(bundle_dir / KERAS_FILE, compile=False)


def parity(
    model: keras.Model,
    flatbuffer: bytes,
    spec: ModelSpec,
    *,
    batch_sizes: tuple[int, ...] = (1, 7, 64),
    seed: int = 0,
) -> float:
    """Largest |Keras - LiteRT| over random scaled windows at several batch sizes.

    LiteRT runs through the serving backend (:class:`~services.realtime.backends.LiteRtModel`),
    so what is checked is what serves.
    """
    litert = LiteRtModel(flatbuffer, spec)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for batch in batch_sizes:
        x = rng.normal(size=(batch, *model.input_shape[1:])).astype(np.float32)
        expected = np.asarray(model(x, training=False))
        worst = max(worst, float(np.max(np.abs(litert.run_scaled(x) - expected))))
    return worst


def _readme(spec: ModelSpec, metrics: dict[str, Any]) -> str:
    holdout = metrics.get("holdout", {})
    model = holdout.get("model", {})
    lines = [
        f"# {spec.version}",
        "",
        f"Realtime LSTM of wattstream: {spec.input_steps} bins of {spec.resolution_s} s of "
        f"{len(spec.features)} features in, {spec.horizon_steps} bins of "
        f"`{spec.target}` out as quantiles {list(spec.quantiles)} (kW).",
        "Made by `wattstream train realtime --data PATH` "
        "(`services.realtime.model.training.train_realtime`).",
    ]
    if model:
        lines.append(
            f"Hold-out ({holdout.get('windows')} windows from {holdout.get('from')}): "
            f"RMSE {model.get('rmse')} kW, MAE {model.get('mae')} kW, "
            f"interval coverage {holdout.get('interval_coverage')}."
        )
    lines += ["", ATTRIBUTION, ""]
    return "\n".join(lines)


def write_bundle(
    model: keras.Model,
    spec: ModelSpec,
    metrics: dict[str, Any],
    bundle_dir: Path,
    *,
    saved_model: bool = False,
) -> Path:
    """Write the bundle atomically (to a sibling temporary directory, then renamed).

    Raises :class:`BundleParityError`, and writes nothing, when LiteRT disagrees with
    Keras by more than :data:`PARITY_TOLERANCE`.
    """
    flatbuffer = litert_flatbuffer(model)
    worst = parity(model, flatbuffer, spec)
    if worst > PARITY_TOLERANCE:
        raise BundleParityError(f"LiteRT differs from Keras by {worst:.2e}")
    bundle_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{bundle_dir.name}.", dir=bundle_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be read
    try:
        model.save(staging / KERAS_FILE)
        (staging / LITERT_FILE).write_bytes(flatbuffer)
        (staging / METADATA_FILE).write_text(spec.model_dump_json(indent=2) + "\n")
        record = {**metrics, "litert_max_abs_diff": worst}
        (staging / METRICS_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        (staging / README_FILE).write_text(_readme(spec, metrics))
        if saved_model:
            export_saved_model(model, staging / SAVED_MODEL_DIR)
        read_spec(staging)
        if bundle_dir.exists():
            shutil.rmtree(bundle_dir)
        staging.rename(bundle_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return bundle_dir
