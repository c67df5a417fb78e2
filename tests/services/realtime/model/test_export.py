"""The bundle: Keras, LiteRT and SavedModel agree; metadata is a ModelSpec; S3 storage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.realtime.backends import LiteRtModel
from services.realtime.core.spec import ModelSpec
from services.realtime.model.bundle import (
    KERAS_FILE,
    LITERT_FILE,
    METADATA_FILE,
    METRICS_FILE,
    README_FILE,
    SAVED_MODEL_DIR,
    download_bundle,
    read_spec,
    shipped_bundle_dir,
    upload_bundle,
)
from services.realtime.model.export import (
    PARITY_TOLERANCE,
    litert_flatbuffer,
    load_keras_model,
    saved_model_predict,
)
from services.realtime.model.training import forecast_kw
from tests.services.realtime.model.conftest import raw_windows

#: kW; LiteRT and TensorFlow differ only in float32 summation order.
KW_TOLERANCE = 1e-3


def test_write_bundle_writes_every_artifact_and_a_valid_spec(tiny_bundle: Path) -> None:
    for name in (KERAS_FILE, LITERT_FILE, METADATA_FILE, METRICS_FILE, README_FILE):
        assert (tiny_bundle / name).is_file(), name
    assert (tiny_bundle / SAVED_MODEL_DIR / "saved_model.pb").is_file()
    spec = ModelSpec.model_validate_json((tiny_bundle / METADATA_FILE).read_text())
    assert spec.version == tiny_bundle.name
    metrics = json.loads((tiny_bundle / METRICS_FILE).read_text())
    assert metrics["litert_max_abs_diff"] <= PARITY_TOLERANCE
    assert "CC BY 4.0" in (tiny_bundle / README_FILE).read_text()


@pytest.mark.parametrize("batch", [1, 3, 512, 1500])
def test_litert_matches_keras_for_any_batch_size(tiny_bundle: Path, batch: int) -> None:
    model = load_keras_model(tiny_bundle)
    spec = read_spec(tiny_bundle)
    litert = LiteRtModel(tiny_bundle / LITERT_FILE, spec, max_batch=1024)
    windows = raw_windows(spec, batch, seed=batch)
    expected = forecast_kw((model, spec), windows)
    got = spec.unscale_target(litert.run_scaled(spec.scale(windows)))
    assert got.shape == (batch, spec.horizon_steps, len(spec.quantiles))
    np.testing.assert_allclose(got, expected, atol=KW_TOLERANCE)


def test_litert_run_scaled_resizes_back_and_forth(tiny_bundle: Path) -> None:
    spec = read_spec(tiny_bundle)
    litert = LiteRtModel(tiny_bundle / LITERT_FILE, spec)
    x = spec.scale(raw_windows(spec, 8))
    whole = litert.run_scaled(x)
    np.testing.assert_array_equal(litert.run_scaled(x[:2]), whole[:2])  # smaller, same rows
    np.testing.assert_array_equal(litert.run_scaled(x), whole)
    assert litert.run_scaled(x[:0]).shape == (0, *whole.shape[1:])
    with pytest.raises(ValueError, match="windows must be"):
        litert.run_scaled(x[:, :-1])


def test_saved_model_matches_keras(tiny_bundle: Path) -> None:
    model = load_keras_model(tiny_bundle)
    spec = read_spec(tiny_bundle)
    x = spec.scale(raw_windows(spec, 5))
    np.testing.assert_allclose(
        saved_model_predict(tiny_bundle / SAVED_MODEL_DIR, x), np.asarray(model(x)), atol=1e-5
    )


def test_litert_flatbuffer_of_a_reloaded_model_is_the_same_network(tiny_bundle: Path) -> None:
    model = load_keras_model(tiny_bundle)
    spec = read_spec(tiny_bundle)
    x = spec.scale(raw_windows(spec, 4))
    again = LiteRtModel(litert_flatbuffer(model), spec).run_scaled(x)
    stored = LiteRtModel(tiny_bundle / LITERT_FILE, spec).run_scaled(x)
    np.testing.assert_allclose(again, stored, atol=1e-6)


def test_shipped_bundle_is_small_valid_and_consistent() -> None:
    bundle = shipped_bundle_dir()
    spec = read_spec(bundle)
    assert spec.version == bundle.name
    assert spec.resolution_s == 900
    files = [p for p in bundle.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {KERAS_FILE, LITERT_FILE, METADATA_FILE, METRICS_FILE}
    assert sum(p.stat().st_size for p in files) < 2_000_000
    windows = raw_windows(spec, 64)
    expected = forecast_kw((load_keras_model(bundle), spec), windows)
    got = LiteRtModel.from_bundle(bundle).predict(windows)
    np.testing.assert_allclose(got, expected, atol=KW_TOLERANCE)
    assert (np.diff(got, axis=-1) >= 0).all()  # quantiles ascending


def test_upload_bundle_stores_it_under_its_version_and_download_reads_it_back(
    tiny_bundle: Path, deploy_stack, clients, tmp_path: Path
) -> None:
    bucket = deploy_stack().outputs["ModelsBucketName"]
    s3 = clients("s3")
    version = read_spec(tiny_bundle).version

    keys = upload_bundle(tiny_bundle, bucket=bucket, s3=s3)
    assert keys[-1] == "models/realtime/latest.json"
    assert f"models/realtime/{version}/{LITERT_FILE}" in keys
    assert f"models/realtime/{version}/{SAVED_MODEL_DIR}/saved_model.pb" in keys
    listed = {
        item["Key"]
        for item in s3.list_objects_v2(Bucket=bucket, Prefix="models/realtime/")["Contents"]
    }
    assert listed == set(keys)
    assert upload_bundle(tiny_bundle, bucket=bucket, s3=s3) == keys  # idempotent

    fetched = download_bundle(tmp_path, bucket=bucket, s3=s3)
    assert fetched == tmp_path / version
    assert read_spec(fetched) == read_spec(tiny_bundle)
    assert (fetched / LITERT_FILE).read_bytes() == (tiny_bundle / LITERT_FILE).read_bytes()
    with pytest.raises(FileNotFoundError):
        download_bundle(tmp_path, bucket=bucket, s3=s3, version="no-such-version")
