"""SageMaker: archive layout, the inference handlers, and the deploy requests (moto)."""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from services.realtime.model.bundle import read_spec
from services.realtime.model.export import load_keras_model, saved_model_predict
from services.realtime.model.sagemaker import (
    build_model_archive,
    deploy_endpoint,
    deploy_sagemaker,
    resource_name,
    tf_serving_image_uri,
)
from services.realtime.model.training import forecast_kw
from tests.services.realtime.model.conftest import raw_windows

ROLE = "arn:aws:iam::123456789012:role/wattstream-sagemaker"


@pytest.fixture(scope="module")
def archive(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_archive(tiny_bundle, tmp_path_factory.mktemp("sm") / "model.tar.gz")


@pytest.fixture(scope="module")
def extracted(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("extracted")
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root


@pytest.fixture(scope="module")
def handlers(extracted: Path) -> ModuleType:
    """code/inference.py from the archive, imported as the container imports it."""
    spec = importlib.util.spec_from_file_location(
        "sm_inference", extracted / "code" / "inference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_archive_has_the_tf_serving_multi_model_layout(archive: Path, tiny_bundle: Path) -> None:
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "realtime/1/saved_model.pb" in members
    assert any(name.startswith("realtime/1/variables/variables.") for name in members)
    assert "code/inference.py" in members
    assert "code/metadata.json" in members
    assert all(m.mtime == 0 for m in members.values())
    assert all(name.startswith(("realtime/1/", "code/")) for name in members)


def test_archive_is_reproducible(tiny_bundle: Path, archive: Path, tmp_path: Path) -> None:
    again = build_model_archive(tiny_bundle, tmp_path / "again.tar.gz")
    assert again.read_bytes() == archive.read_bytes()


def test_archive_exports_a_saved_model_when_the_bundle_has_none(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    slim = tmp_path / tiny_bundle.name
    slim.mkdir()
    for name in ("model.keras", "metadata.json"):
        (slim / name).write_bytes((tiny_bundle / name).read_bytes())
    with tarfile.open(build_model_archive(slim, tmp_path / "m.tar.gz")) as tar:
        assert "realtime/1/saved_model.pb" in tar.getnames()


def _serve(extracted: Path, request_json: str) -> np.ndarray:
    """What TF Serving answers to an ``{"instances": ...}`` request, via the SavedModel."""
    instances = np.asarray(json.loads(request_json)["instances"], dtype=np.float32)
    return saved_model_predict(extracted / "realtime" / "1", instances)


def _context(content_type: str = "application/json") -> SimpleNamespace:
    return SimpleNamespace(request_content_type=content_type, accept_header="application/json")


def test_handlers_give_the_in_process_forecasts(
    handlers: ModuleType, extracted: Path, tiny_bundle: Path
) -> None:
    spec = read_spec(tiny_bundle)
    windows = raw_windows(spec, 3)
    request = json.dumps({"windows": windows.tolist()}).encode()

    tf_request = handlers.input_handler(io.BytesIO(request), _context())
    served = _serve(extracted, tf_request)
    response = SimpleNamespace(
        status_code=200, content=json.dumps({"predictions": served.tolist()}).encode()
    )
    body, content_type = handlers.output_handler(response, _context())

    assert content_type == "application/json"
    answer = json.loads(body)
    assert answer["model_version"] == spec.version
    assert answer["quantiles"] == list(spec.quantiles)
    expected = forecast_kw((load_keras_model(tiny_bundle), spec), windows)
    np.testing.assert_allclose(np.asarray(answer["predictions"]), expected, atol=1e-4)


def test_handlers_accept_feature_rows_by_name(handlers: ModuleType, tiny_bundle: Path) -> None:
    spec = read_spec(tiny_bundle)
    rows = raw_windows(spec, 1)[0]
    older = [[0.0] * len(spec.features)] * 5  # only the last input_steps rows count
    by_name = [dict(zip(spec.features, row, strict=True)) for row in rows.tolist()]
    as_windows = handlers.input_handler(
        io.BytesIO(json.dumps({"windows": [rows.tolist()]}).encode()), _context()
    )
    as_rows = handlers.input_handler(
        io.BytesIO(json.dumps({"rows": older + by_name}).encode()), _context()
    )
    assert json.loads(as_rows) == json.loads(as_windows)


def test_handlers_pass_tf_serving_instances_through(handlers: ModuleType) -> None:
    body = json.dumps({"instances": [[[0.5]]]}).encode()
    assert json.loads(handlers.input_handler(io.BytesIO(body), _context())) == {
        "instances": [[[0.5]]]
    }


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"windows": [[[1.0]]]}, "rows"),
        ({"rows": [[1.0] * 11]}, "at least"),
        ({"something": 1}, "expected"),
        ([1, 2], "JSON object"),
    ],
)
def test_handlers_reject_malformed_requests(handlers: ModuleType, body: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        handlers.input_handler(io.BytesIO(json.dumps(body).encode()), _context())


def test_handlers_reject_other_content_types_and_serving_errors(handlers: ModuleType) -> None:
    with pytest.raises(ValueError, match="content type"):
        handlers.input_handler(io.BytesIO(b"1,2"), _context("text/csv"))
    with pytest.raises(ValueError, match="boom"):
        handlers.output_handler(SimpleNamespace(status_code=500, content=b"boom"), _context())


def test_tf_serving_image_uri_follows_the_dlc_registry_per_region() -> None:
    assert tf_serving_image_uri("us-east-1", "2.19.0") == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.19.0-cpu"
    )
    assert tf_serving_image_uri("af-south-1").startswith("626614931356.dkr.ecr.af-south-1.")
    assert tf_serving_image_uri("cn-north-1").endswith(
        ".amazonaws.com.cn/tensorflow-inference:2.19.0-cpu"
    )
    assert resource_name("a_b", "c.d") == "a-b-c-d"
    assert len(resource_name("x" * 100)) == 63


def _deploy_kwargs(endpoint_name: str) -> dict[str, str]:
    return {
        "model_data_url": "s3://models/models/realtime/v/sagemaker/model.tar.gz",
        "role_arn": ROLE,
        "image_uri": tf_serving_image_uri("us-east-1"),
        "endpoint_name": endpoint_name,
    }


def test_deploy_endpoint_creates_model_config_and_endpoint_on_the_local_stack(clients) -> None:
    sagemaker = clients("sagemaker")
    kwargs = _deploy_kwargs("wattstream-test-deploy")
    first = deploy_endpoint(sagemaker, **{**kwargs, "version": "lstm15-20250101-aaaa1111"})
    image = kwargs["image_uri"]
    assert first.endpoint_action == "created"
    model = sagemaker.describe_model(ModelName=first.model_name)
    assert model["ExecutionRoleArn"] == ROLE
    container = model["PrimaryContainer"]
    assert container["Image"] == image
    assert container["ModelDataUrl"] == first.model_data_url
    assert container["Environment"]["SAGEMAKER_TFS_DEFAULT_MODEL_NAME"] == "realtime"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=first.endpoint_config_name)
    (variant,) = config["ProductionVariants"]
    assert variant["ModelName"] == first.model_name
    assert variant["InstanceType"] == "ml.m5.large"
    assert variant["InitialInstanceCount"] == 1
    endpoint = sagemaker.describe_endpoint(EndpointName="wattstream-test-deploy")
    assert endpoint["EndpointConfigName"] == first.endpoint_config_name

    again = deploy_endpoint(sagemaker, **{**kwargs, "version": "lstm15-20250101-aaaa1111"})
    assert again.endpoint_action == "unchanged"
    assert again.model_name == first.model_name


class UpdateRecorder:
    """The moto client, plus ``update_endpoint``, which moto 5.2 does not implement."""

    def __init__(self, client: object) -> None:
        self._client = client
        self.updates: list[dict[str, str]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)

    def update_endpoint(self, **request: str) -> dict[str, str]:
        self.updates.append(request)
        return {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/x"}


def test_deploy_endpoint_points_an_existing_endpoint_at_a_new_version(clients) -> None:
    sagemaker = UpdateRecorder(clients("sagemaker"))
    kwargs = _deploy_kwargs("wattstream-test-update")
    deploy_endpoint(sagemaker, **{**kwargs, "version": "lstm15-20250101-aaaa1111"})
    newer = deploy_endpoint(sagemaker, **{**kwargs, "version": "lstm15-20250202-bbbb2222"})
    assert newer.endpoint_action == "updated"
    assert sagemaker.updates == [
        {"EndpointName": "wattstream-test-update", "EndpointConfigName": newer.endpoint_config_name}
    ]
    # the new version's model and configuration exist before the endpoint is pointed at them
    assert sagemaker.describe_model(ModelName=newer.model_name)["ModelName"] == newer.model_name
    sagemaker.describe_endpoint_config(EndpointConfigName=newer.endpoint_config_name)


def test_deploy_sagemaker_uploads_the_archive_and_deploys_it(
    tiny_bundle: Path, deploy_stack, clients
) -> None:
    bucket = deploy_stack().outputs["ModelsBucketName"]
    s3 = clients("s3")
    deployment = deploy_sagemaker(
        tiny_bundle,
        bucket=bucket,
        role_arn=ROLE,
        s3=s3,
        sagemaker=clients("sagemaker"),
        region="us-east-1",
        endpoint_name="wattstream-realtime-e2e",
    )
    version = read_spec(tiny_bundle).version
    key = f"models/realtime/{version}/sagemaker/model.tar.gz"
    assert deployment.model_data_url == f"s3://{bucket}/{key}"
    archive = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert "code/inference.py" in tar.getnames()
    assert deployment.endpoint_action == "created"
