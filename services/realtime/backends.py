"""Inference backends behind the :class:`~services.realtime.ports.ForecastModel` port.

Chosen by configuration (``MODEL_BACKEND``), all with the same contract: raw feature
windows ``(batch, input_steps, features)`` in, ``(batch, horizon_steps, quantiles)`` kW
out; scaling (the bundle's :class:`ModelSpec`) lives here, once, for every backend.

* ``litert``: the bundle's ``model.tflite`` in-process with ``ai_edge_litert`` (no
  TensorFlow: ~5 MB instead of 1.3 GB, which is what fits a Lambda package). Batched: a
  model exported with a fixed batch dimension gets chunks of that size (the last one
  padded); a dynamic one is resized to the next power of two, up to ``max_batch``. The
  same class runs the export's parity check on scaled tensors (:meth:`LiteRtModel.run_scaled`),
  so the flatbuffer is verified by the code that serves it.
* ``tensorflow``: the Keras model (``model.keras``) or a SavedModel directory,
  in-process, in chunks of ``max_batch``.
* ``sagemaker``: a SageMaker endpoint through ``sagemaker-runtime`` ``InvokeEndpoint``
  with TensorFlow Serving's JSON request, ``{"instances": <scaled windows>}``. That one
  request serves both endpoints we deploy: the bare SavedModel (TF Serving answers
  ``{"predictions": <scaled>}``) and the packaged model whose ``code/inference.py``
  (``services/realtime/model/inference_code``) passes ``instances`` through and answers
  ``{"model_version", "resolution_s", "quantiles", "predictions": <kW>}``; the response
  says which it is, and a model version other than the bundle's is refused (the windows
  were shaped and scaled for the bundle). The mapping is :func:`sagemaker_request` /
  :func:`sagemaker_response`, nowhere else.

Bundles (``metadata.json`` + model files) are read with
:mod:`services.realtime.model.bundle`. TensorFlow and LiteRT are imported only when
their backend is built.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from services.realtime.core.spec import ModelSpec
from services.realtime.model.bundle import KERAS_FILE, LITERT_FILE, read_spec

__all__ = [
    "BACKENDS",
    "MAX_SAGEMAKER_PAYLOAD_BYTES",
    "Backend",
    "KerasModel",
    "LiteRtModel",
    "SageMakerModel",
    "open_model",
    "sagemaker_request",
    "sagemaker_response",
]

Backend = Literal["litert", "tensorflow", "sagemaker"]
BACKENDS: Final[tuple[str, ...]] = ("litert", "tensorflow", "sagemaker")
FloatArray = npt.NDArray[np.float64]

#: InvokeEndpoint accepts 6 MB of payload; stay below with room for the JSON envelope.
MAX_SAGEMAKER_PAYLOAD_BYTES: Final = 5_000_000
_JSON: Final = "application/json"
#: Decimals kept of the scaled inputs on the wire (float32 has ~7 significant digits).
_WIRE_DECIMALS: Final = 6


def _chunks(count: int, size: int) -> range:
    return range(0, count, max(1, size))


def _output_kw(spec: ModelSpec, scaled: npt.ArrayLike, count: int) -> FloatArray:
    """Scaled model output of ``count`` windows -> ``(count, horizon, quantiles)`` kW."""
    shape = (count, spec.horizon_steps, len(spec.quantiles))
    return spec.unscale_target(np.asarray(scaled, dtype=np.float64).reshape(shape))


def _check_shape(spec: ModelSpec, windows: npt.ArrayLike) -> np.ndarray:
    """``windows`` as an array, after checking its shape against the spec."""
    array = np.asarray(windows)
    expected = (spec.input_steps, len(spec.features))
    if array.ndim != 3 or array.shape[1:] != expected:
        raise ValueError(
            f"windows must be (batch, {expected[0]}, {expected[1]}), got {array.shape}"
        )
    return array


def _check(spec: ModelSpec, windows: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Scaled model input, after checking the window shape against the spec."""
    return spec.scale(_check_shape(spec, windows))


class LiteRtModel:
    """A LiteRT (TFLite) flatbuffer in-process, batched: the one LiteRT wrapper.

    ``model`` is a ``.tflite`` path or the flatbuffer's bytes (the export checks a
    flatbuffer before writing it). A flatbuffer with a fixed batch dimension gets chunks
    of exactly that size, the last one padded with zeros. A dynamic one gets chunks of
    ``max_batch`` and a last chunk rounded up to a power of two; each size has its own
    interpreter, allocated once (interpreters share nothing but the ~100 KB flatbuffer),
    so a stream of varying batch sizes never re-allocates and pads at most 2x.
    """

    def __init__(
        self,
        model: Path | bytes,
        spec: ModelSpec,
        *,
        num_threads: int | None = 1,
        max_batch: int = 512,
    ) -> None:
        self.spec = spec
        self._content = model if isinstance(model, bytes) else Path(model).read_bytes()
        self._num_threads = num_threads
        probe = self._new_interpreter()
        (self._input,) = probe.get_input_details()
        (self._output,) = probe.get_output_details()
        signature = self._input.get("shape_signature", self._input["shape"])
        expected = (spec.input_steps, len(spec.features))
        if tuple(int(d) for d in signature[1:]) != expected:
            name = "flatbuffer" if isinstance(model, bytes) else str(model)
            raise ValueError(f"{name}: input {list(signature)} does not match the spec")
        self.dynamic_batch = int(signature[0]) == -1
        self.fixed_batch = None if self.dynamic_batch else int(signature[0])
        self._max_batch = max(1, 1 << (max_batch.bit_length() - 1))  # a power of two
        self._interpreters: dict[int, Any] = {}
        if self.fixed_batch is not None:
            probe.allocate_tensors()
            self._interpreters[self.fixed_batch] = probe

    @classmethod
    def from_bundle(cls, bundle: Path, **options: Any) -> LiteRtModel:
        return cls(Path(bundle) / LITERT_FILE, read_spec(Path(bundle)), **options)

    def _new_interpreter(self) -> Any:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_content=self._content, num_threads=self._num_threads)

    def _interpreter(self, size: int) -> Any:
        interpreter = self._interpreters.get(size)
        if interpreter is None:
            interpreter = self._new_interpreter()
            shape = [size, self.spec.input_steps, len(self.spec.features)]
            interpreter.resize_tensor_input(self._input["index"], shape)
            interpreter.allocate_tensors()
            self._interpreters[size] = interpreter
        return interpreter

    def _chunk_sizes(self, count: int) -> list[int]:
        if self.fixed_batch is not None:
            return [self.fixed_batch] * math.ceil(count / self.fixed_batch)
        full, rest = divmod(count, self._max_batch)
        return [self._max_batch] * full + ([1 << (rest - 1).bit_length()] if rest else [])

    def _run(self, x: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        """The scaled outputs of scaled, shape-checked windows, chunk by chunk."""
        out, start = [], 0
        for size in self._chunk_sizes(len(x)):
            chunk = x[start : start + size]
            if len(chunk) < size:
                padding = np.zeros((size - len(chunk), *x.shape[1:]), x.dtype)
                chunk = np.concatenate([chunk, padding])
            interpreter = self._interpreter(size)
            interpreter.set_tensor(self._input["index"], chunk)
            interpreter.invoke()
            out.append(interpreter.get_tensor(self._output["index"])[: len(x) - start])
            start += size
        return out

    def run_scaled(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Scaled windows ``(batch, steps, features)`` -> the model's scaled output.

        The raw tensors, for checking a flatbuffer against the network it came from.
        """
        scaled = np.ascontiguousarray(_check_shape(self.spec, x), dtype=np.float32)
        out = self._run(scaled)
        if not out:
            shape = (0, self.spec.horizon_steps, len(self.spec.quantiles))
            return np.zeros(shape, dtype=np.float32)
        return np.concatenate(out)

    def predict(self, windows: npt.ArrayLike) -> FloatArray:
        x = _check(self.spec, windows)
        out = self._run(x)
        if not out:
            return _output_kw(self.spec, np.empty(0), 0)
        return _output_kw(self.spec, np.concatenate(out), len(x))


class KerasModel:
    """A Keras model (``.keras``) or a TensorFlow SavedModel, in-process, in chunks."""

    def __init__(
        self,
        call: Callable[[npt.NDArray[np.float32]], Any],
        spec: ModelSpec,
        *,
        max_batch: int = 512,
    ) -> None:
        self.spec = spec
        self._call = call
        self._max_batch = max_batch

    @classmethod
    def from_bundle(cls, bundle: Path, **options: Any) -> KerasModel:
        """The bundle's ``model.keras`` (loaded without its training loss)."""
        bundle = Path(bundle)
        import keras

        model = keras.saving.load_model(bundle / KERAS_FILE, compile=False)
        return cls(lambda x: model(x, training=False), read_spec(bundle), **options)

    @classmethod
    def from_saved_model(cls, directory: Path, spec: ModelSpec, **options: Any) -> KerasModel:
        """The ``serving_default`` signature of a SavedModel (its only output is used)."""
        import tensorflow as tf

        loaded = tf.saved_model.load(str(directory))
        serve = loaded.signatures["serving_default"]

        def call(x: npt.NDArray[np.float32]) -> Any:
            (output,) = serve(tf.constant(x)).values()
            return output

        return cls(call, spec, **options)

    def predict(self, windows: npt.ArrayLike) -> FloatArray:
        x = _check(self.spec, windows)
        out = [
            np.asarray(self._call(x[i : i + self._max_batch]))
            for i in _chunks(len(x), self._max_batch)
        ]
        return _output_kw(self.spec, np.concatenate(out) if out else np.empty(0), len(x))


def sagemaker_request(spec: ModelSpec, windows: npt.ArrayLike) -> tuple[str, bytes]:
    """``(ContentType, Body)`` for InvokeEndpoint: TF Serving's row format, scaled inputs.

    >>> spec = ModelSpec(version="v", resolution_s=900, input_steps=1, horizon_steps=1,
    ...                  features=("global_active_power_kw",), quantiles=(0.1, 0.5, 0.9),
    ...                  feature_mean=(1.0,), feature_std=(2.0,))
    >>> sagemaker_request(spec, [[[3.0]]])
    ('application/json', b'{"instances":[[[1.0]]]}')
    """
    scaled = np.round(_check(spec, windows).astype(np.float64), _WIRE_DECIMALS)
    body = json.dumps({"instances": scaled.tolist()}, separators=(",", ":"), allow_nan=False)
    return _JSON, body.encode()


def sagemaker_response(spec: ModelSpec, body: bytes, count: int) -> FloatArray:
    """The endpoint's answer -> ``(count, horizon, quantiles)`` kW.

    ``inference.py``'s envelope (``model_version`` present) carries kW; a bare TF Serving
    answer carries the scaled target.

    >>> spec = ModelSpec(version="v", resolution_s=900, input_steps=1, horizon_steps=1,
    ...                  features=("global_active_power_kw",), quantiles=(0.1, 0.5, 0.9),
    ...                  feature_mean=(1.0,), feature_std=(2.0,))
    >>> sagemaker_response(spec, b'{"predictions": [[[0.0, 0.5, 1.0]]]}', 1).tolist()
    [[[1.0, 2.0, 3.0]]]
    >>> kw = b'{"model_version": "v", "predictions": [[[1, 2, 3]]]}'
    >>> sagemaker_response(spec, kw, 1).tolist()
    [[[1.0, 2.0, 3.0]]]
    """
    try:
        answer = json.loads(body)
        predictions = answer["predictions"]
        shape = (count, spec.horizon_steps, len(spec.quantiles))
        if "model_version" not in answer:
            return _output_kw(spec, predictions, count)
        if answer["model_version"] != spec.version:
            raise ValueError(
                f"the endpoint serves model {answer['model_version']!r}, "
                f"the windows were built for {spec.version!r}"
            )
        return np.asarray(predictions, dtype=np.float64).reshape(shape)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"unexpected SageMaker response ({error}): {body[:200]!r}") from error


class SageMakerModel:
    """A SageMaker endpoint serving the model (``InvokeEndpoint``, injected client)."""

    def __init__(self, endpoint_name: str, spec: ModelSpec, client: Any) -> None:
        if not endpoint_name:
            raise ValueError("the sagemaker backend needs an endpoint name")
        self.spec = spec
        self.endpoint_name = endpoint_name
        self._client = client
        per_window = spec.input_steps * len(spec.features) * (_WIRE_DECIMALS + 6)
        self.max_instances = max(1, MAX_SAGEMAKER_PAYLOAD_BYTES // per_window)

    def predict(self, windows: npt.ArrayLike) -> FloatArray:
        x = np.asarray(windows)
        out = []
        for start in _chunks(len(x), self.max_instances):
            chunk = x[start : start + self.max_instances]
            content_type, body = sagemaker_request(self.spec, chunk)
            response = self._client.invoke_endpoint(
                EndpointName=self.endpoint_name,
                ContentType=content_type,
                Accept=_JSON,
                Body=body,
            )
            out.append(sagemaker_response(self.spec, response["Body"].read(), len(chunk)))
        if not out:
            return _output_kw(self.spec, np.empty(0), 0)
        return np.concatenate(out)


def open_model(
    backend: str,
    bundle: Path,
    *,
    endpoint_name: str = "",
    sagemaker_client: Any = None,
    num_threads: int | None = 1,
    max_batch: int = 512,
) -> LiteRtModel | KerasModel | SageMakerModel:
    """The model of ``bundle`` on ``backend`` (the SageMaker backend reads only its spec)."""
    if backend == "litert":
        return LiteRtModel.from_bundle(bundle, num_threads=num_threads, max_batch=max_batch)
    if backend == "tensorflow":
        return KerasModel.from_bundle(bundle, max_batch=max_batch)
    if backend == "sagemaker":
        if sagemaker_client is None:
            raise ValueError("the sagemaker backend needs a sagemaker-runtime client")
        return SageMakerModel(endpoint_name, read_spec(Path(bundle)), sagemaker_client)
    raise ValueError(f"unknown model backend {backend!r}; choose one of {', '.join(BACKENDS)}")
