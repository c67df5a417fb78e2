"""Inference backends: LiteRT (fixed and dynamic batch), TensorFlow, SageMaker (stub endpoint)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from services.realtime.backends import (
    KerasModel,
    LiteRtModel,
    SageMakerModel,
    open_model,
    sagemaker_request,
    sagemaker_response,
)
from services.realtime.core.spec import ModelSpec
from services.realtime.model.bundle import read_spec
from tests.services.realtime.fakes import TFLITE_BATCH, windows_like


@pytest.fixture(scope="module")
def keras_reference(tiny_bundle: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The bundle's Keras model on scaled windows (what every backend must reproduce)."""
    import keras

    model = keras.saving.load_model(tiny_bundle / "model.keras", compile=False)
    return lambda scaled: np.asarray(model(scaled, training=False))


def expected_kw(spec: ModelSpec, reference: Callable, windows: np.ndarray) -> np.ndarray:
    return spec.unscale_target(reference(spec.scale(windows)))


class StubEndpoint:
    """A local SageMaker runtime: ``invoke_endpoint``'s request/response shape with the
    model behind TF Serving's JSON. Keeps every request for inspection."""

    def __init__(self, name: str, serve: Callable[[np.ndarray], np.ndarray]) -> None:
        self.name = name
        self.serve = serve
        self.requests: list[dict[str, Any]] = []

    def tf_serving(self, body: bytes) -> bytes:
        """TF Serving's REST predict: ``{"instances"}`` -> ``{"predictions"}``."""
        instances = np.asarray(json.loads(body)["instances"], dtype=np.float32)
        return json.dumps({"predictions": self.serve(instances).tolist()}).encode()

    def handle(self, body: bytes, content_type: str) -> bytes:
        return self.tf_serving(body)

    def invoke_endpoint(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        if request["EndpointName"] != self.name:
            raise ValueError(f"Endpoint {request['EndpointName']} not found")
        body = self.handle(request["Body"], request["ContentType"])
        return {
            "Body": StreamingBody(io.BytesIO(body), len(body)),
            "ContentType": "application/json",
            "InvokedProductionVariant": "AllTraffic",
        }


class PackagedEndpoint(StubEndpoint):
    """The same, with the packaged ``code/inference.py`` around TF Serving, as the
    SageMaker TensorFlow Serving container runs it (input_handler, output_handler)."""

    def __init__(self, name: str, serve: Callable[[np.ndarray], np.ndarray], code: Any) -> None:
        super().__init__(name, serve)
        self.code = code

    def handle(self, body: bytes, content_type: str) -> bytes:
        context = SimpleNamespace(request_content_type=content_type)
        request = self.code.input_handler(io.BytesIO(body), context)
        reply = SimpleNamespace(status_code=200, content=self.tf_serving(request.encode()))
        answer, _ = self.code.output_handler(reply, context)
        return answer.encode()


@pytest.fixture
def inference_code(tiny_bundle, monkeypatch):
    """The other half of the SageMaker contract: the shipped inference.py, on our bundle."""
    from services.realtime.model.inference_code import inference

    monkeypatch.setenv("WATTSTREAM_METADATA", str(tiny_bundle / "metadata.json"))
    inference.spec.cache_clear()
    yield inference
    inference.spec.cache_clear()


# ----------------------------------------------------------------------------------- LiteRT


def test_litert_fixed_batch_pads_and_chunks_to_the_keras_output(tiny_bundle, keras_reference):
    model = LiteRtModel.from_bundle(tiny_bundle)
    windows = windows_like(model.spec, 2 * TFLITE_BATCH + 3)

    out = model.predict(windows)

    assert model.fixed_batch == TFLITE_BATCH
    assert out.shape == (len(windows), model.spec.horizon_steps, 3)
    np.testing.assert_allclose(out, expected_kw(model.spec, keras_reference, windows), atol=1e-4)


def test_litert_dynamic_batch_is_resized(tiny_bundle, keras_reference):
    spec = read_spec(tiny_bundle)
    model = LiteRtModel(tiny_bundle / "model_dynamic.tflite", spec, max_batch=8)
    windows = windows_like(spec, 19)

    out = model.predict(windows)

    assert model.dynamic_batch
    np.testing.assert_allclose(out, expected_kw(spec, keras_reference, windows), atol=1e-4)
    np.testing.assert_allclose(model.predict(windows[:1]), out[:1], atol=1e-6)


def test_litert_empty_batch_gives_an_empty_forecast(tiny_bundle):
    model = LiteRtModel.from_bundle(tiny_bundle)
    empty = np.empty((0, model.spec.input_steps, len(model.spec.features)))
    assert model.predict(empty).shape == (0, model.spec.horizon_steps, 3)


def test_litert_refuses_windows_of_the_wrong_shape(tiny_bundle):
    model = LiteRtModel.from_bundle(tiny_bundle)
    with pytest.raises(ValueError, match="windows must be"):
        model.predict(np.zeros((2, model.spec.input_steps + 1, len(model.spec.features))))


def test_litert_refuses_a_flatbuffer_of_another_spec(tiny_bundle):
    other = read_spec(tiny_bundle).model_copy(update={"input_steps": 5})
    with pytest.raises(ValueError, match="does not match the spec"):
        LiteRtModel(tiny_bundle / "model.tflite", other)


# ------------------------------------------------------------------------------- TensorFlow


def test_tensorflow_keras_bundle_matches_litert(tiny_bundle):
    keras_model = KerasModel.from_bundle(tiny_bundle, max_batch=5)
    windows = windows_like(keras_model.spec, 12)

    out = keras_model.predict(windows)

    np.testing.assert_allclose(
        out, LiteRtModel.from_bundle(tiny_bundle).predict(windows), atol=1e-4
    )


def test_tensorflow_saved_model_matches_keras(tiny_bundle, keras_reference):
    spec = read_spec(tiny_bundle)
    model = KerasModel.from_saved_model(tiny_bundle / "saved_model", spec)
    windows = windows_like(spec, 6)

    np.testing.assert_allclose(
        model.predict(windows), expected_kw(spec, keras_reference, windows), atol=1e-5
    )


# -------------------------------------------------------------------------------- SageMaker


def test_sagemaker_stub_endpoint_gives_the_in_process_forecast(tiny_bundle, keras_reference):
    spec = read_spec(tiny_bundle)
    endpoint = StubEndpoint("wattstream-realtime", keras_reference)
    model = SageMakerModel("wattstream-realtime", spec, endpoint)
    windows = windows_like(spec, 9)

    out = model.predict(windows)

    np.testing.assert_allclose(
        out, LiteRtModel.from_bundle(tiny_bundle).predict(windows), atol=1e-4
    )
    (request,) = endpoint.requests
    assert request["EndpointName"] == "wattstream-realtime"
    assert request["ContentType"] == request["Accept"] == "application/json"
    instances = np.asarray(json.loads(request["Body"])["instances"])
    assert instances.shape == (9, spec.input_steps, len(spec.features))
    np.testing.assert_allclose(instances, spec.scale(windows), atol=1e-6)  # scaled, rounded


def test_sagemaker_packaged_inference_code_gives_the_same_forecast(
    tiny_bundle, keras_reference, inference_code
):
    spec = read_spec(tiny_bundle)
    endpoint = PackagedEndpoint("wattstream-realtime", keras_reference, inference_code)
    windows = windows_like(spec, 5)

    out = SageMakerModel("wattstream-realtime", spec, endpoint).predict(windows)

    np.testing.assert_allclose(
        out, LiteRtModel.from_bundle(tiny_bundle).predict(windows), atol=1e-4
    )


def test_sagemaker_endpoint_serving_another_model_is_refused(
    tiny_bundle, keras_reference, inference_code
):
    other = read_spec(tiny_bundle).model_copy(update={"version": "tiny-lstm-test-0"})
    endpoint = PackagedEndpoint("e", keras_reference, inference_code)

    with pytest.raises(ValueError, match="the endpoint serves model 'tiny-lstm-test-1'"):
        SageMakerModel("e", other, endpoint).predict(windows_like(other, 1))


def test_sagemaker_large_batches_are_split_below_the_payload_limit(tiny_bundle, keras_reference):
    spec = read_spec(tiny_bundle)
    endpoint = StubEndpoint("e", keras_reference)
    model = SageMakerModel("e", spec, endpoint)
    model.max_instances = 4
    windows = windows_like(spec, 10)

    out = model.predict(windows)

    assert [len(json.loads(r["Body"])["instances"]) for r in endpoint.requests] == [4, 4, 2]
    np.testing.assert_allclose(out, expected_kw(spec, keras_reference, windows), atol=1e-4)
    assert SageMakerModel("e", spec, endpoint).max_instances >= 1


def test_sagemaker_request_is_valid_for_the_invoke_endpoint_api(tiny_bundle):
    """botocore's Stubber checks the parameters against the real sagemaker-runtime model."""
    spec = read_spec(tiny_bundle)
    client = boto3.client("sagemaker-runtime", region_name="us-east-1")
    windows = windows_like(spec, 2)
    content_type, body = sagemaker_request(spec, windows)
    predictions = np.zeros((2, spec.horizon_steps, 3)).tolist()
    reply = json.dumps({"predictions": predictions}).encode()
    with Stubber(client) as stubber:
        stubber.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(reply), len(reply)), "ContentType": content_type},
            {
                "EndpointName": "ep",
                "ContentType": content_type,
                "Accept": content_type,
                "Body": body,
            },
        )
        out = SageMakerModel("ep", spec, client).predict(windows)
        stubber.assert_no_pending_responses()
    np.testing.assert_allclose(out, spec.unscale_target(np.zeros((2, spec.horizon_steps, 3))))


def test_sagemaker_response_without_predictions_is_an_error(spec):
    with pytest.raises(ValueError, match="unexpected SageMaker response"):
        sagemaker_response(spec, b'{"error": "model not loaded"}', 1)
    with pytest.raises(ValueError, match="unexpected SageMaker response"):
        sagemaker_response(spec, b'{"predictions": [[1.0]]}', 1)  # wrong shape


def test_sagemaker_needs_an_endpoint_name(spec):
    with pytest.raises(ValueError, match="endpoint name"):
        SageMakerModel("", spec, client=object())


# ------------------------------------------------------------------------------ selection


def test_open_model_chooses_the_backend_by_name(tiny_bundle):
    assert isinstance(open_model("litert", tiny_bundle), LiteRtModel)
    assert isinstance(open_model("tensorflow", tiny_bundle), KerasModel)
    endpoint = StubEndpoint("e", lambda x: x)
    sagemaker = open_model("sagemaker", tiny_bundle, endpoint_name="e", sagemaker_client=endpoint)
    assert isinstance(sagemaker, SageMakerModel)
    assert sagemaker.spec == read_spec(tiny_bundle)


def test_open_model_refuses_unknown_or_unwired_backends(tiny_bundle):
    with pytest.raises(ValueError, match="unknown model backend"):
        open_model("onnx", tiny_bundle)
    with pytest.raises(ValueError, match="sagemaker-runtime client"):
        open_model("sagemaker", tiny_bundle, endpoint_name="e")


# ----------------------------------------------------------------------- the shipped model


def test_shipped_bundle_runs_the_same_on_litert_and_tensorflow(shipped):
    litert = open_model("litert", shipped)
    windows = windows_like(litert.spec, 37)

    out = litert.predict(windows)

    assert out.shape == (37, litert.spec.horizon_steps, len(litert.spec.quantiles))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, open_model("tensorflow", shipped).predict(windows), atol=1e-3)


def test_shipped_bundle_forecasts_real_april_days_through_the_stream(shipped, april):
    """The shipped model behind the streaming core: two real days, every step forecast."""
    from services.realtime.core.stream import Delivery, StreamConfig, step

    model = open_model("litert", shipped)
    config = StreamConfig(model.spec)
    states: dict = {}
    forecasts = []
    for position, start in enumerate(range(0, 3 * 1440, 60), start=1):  # hourly records
        result = step(states, [Delivery(april.slice(start, start + 60), position)], model, config)
        states.update(result.states)
        forecasts.extend(result.to_forecasts())

    # three days = 288 bins: steps complete from bin 1 on, the first full window is at bin 96
    assert len(forecasts) == 3 * 96 - model.spec.input_steps
    assert {f.model_version for f in forecasts} == {model.spec.version}
    values = np.array([[p.value_kw for p in f.points] for f in forecasts])
    assert values.shape[1] == model.spec.horizon_steps
    assert values.min() >= 0.0
    assert values.max() < 10.0  # a house, in kW
