"""A model bundle on disk and in the models bucket, readable without TensorFlow.

A bundle is one directory named after the model version::

    <version>/
        model.tflite     LiteRT flatbuffer (dynamic batch: resize the input, see litert.py)
        model.keras      the Keras model (training, the TensorFlow backend, re-export)
        metadata.json    a ModelSpec: window, resolution, features, quantiles, scaler
        metrics.json     hold-out accuracy, training config and history
        README.md        what it is, how it was made, data attribution
        saved_model/     TensorFlow SavedModel (optional: ``export.export_saved_model``
                         regenerates it from model.keras; SageMaker packaging does)

In the models bucket it lives under ``models/realtime/<version>/`` with the same relative
paths, and ``models/realtime/latest.json`` (``{"version": ...}``) names the newest one; it
is written last, so a reader that follows it never sees a half-uploaded bundle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from services.realtime.core.spec import ModelSpec

__all__ = [
    "ARTIFACTS_DIR",
    "KERAS_FILE",
    "LATEST_KEY",
    "LITERT_FILE",
    "METADATA_FILE",
    "METRICS_FILE",
    "MODELS_PREFIX",
    "README_FILE",
    "SAVED_MODEL_DIR",
    "download_bundle",
    "read_metrics",
    "read_spec",
    "shipped_bundle_dir",
    "upload_bundle",
]

LITERT_FILE: Final = "model.tflite"
KERAS_FILE: Final = "model.keras"
METADATA_FILE: Final = "metadata.json"
METRICS_FILE: Final = "metrics.json"
README_FILE: Final = "README.md"
SAVED_MODEL_DIR: Final = "saved_model"

#: Where the shipped bundles live in the repository (one directory per version).
ARTIFACTS_DIR: Final = Path(__file__).resolve().parents[1] / "artifacts"
MODELS_PREFIX: Final = "models/realtime"
LATEST_KEY: Final = "latest.json"


def read_spec(bundle_dir: Path) -> ModelSpec:
    """The bundle's ``metadata.json``, validated as a :class:`ModelSpec`."""
    return ModelSpec.model_validate_json((bundle_dir / METADATA_FILE).read_text())


def read_metrics(bundle_dir: Path) -> dict[str, Any]:
    return dict(json.loads((bundle_dir / METRICS_FILE).read_text()))


def shipped_bundle_dir(artifacts_dir: Path = ARTIFACTS_DIR) -> Path:
    """The newest bundle shipped in the repository (so ``make run`` needs no training).

    Versions are ``<kind>-<YYYYMMDD>-<hash>``, so the name sorts by training date.
    """
    bundles = sorted(p.parent for p in artifacts_dir.glob(f"*/{METADATA_FILE}"))
    if not bundles:
        raise FileNotFoundError(f"no model bundle under {artifacts_dir}")
    return bundles[-1]


def _bundle_files(bundle_dir: Path) -> list[Path]:
    return sorted(p for p in bundle_dir.rglob("*") if p.is_file())


def upload_bundle(
    bundle_dir: Path, *, bucket: str, s3: Any, prefix: str = MODELS_PREFIX
) -> list[str]:
    """Put every file of the bundle under ``<prefix>/<version>/``, then point
    ``<prefix>/latest.json`` at it. Idempotent: the same bundle overwrites the same keys.

    ``s3`` is a boto3 S3 client (injected). Returns the keys written, pointer last.
    """
    version = read_spec(bundle_dir).version
    keys = []
    for path in _bundle_files(bundle_dir):
        key = f"{prefix}/{version}/{path.relative_to(bundle_dir).as_posix()}"
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        keys.append(key)
    pointer = f"{prefix}/{LATEST_KEY}"
    s3.put_object(
        Bucket=bucket,
        Key=pointer,
        Body=json.dumps({"version": version}).encode(),
        ContentType="application/json",
    )
    return [*keys, pointer]


def download_bundle(
    dest_dir: Path,
    *,
    bucket: str,
    s3: Any,
    version: str | None = None,
    prefix: str = MODELS_PREFIX,
) -> Path:
    """Fetch a bundle (the ``latest.json`` one by default) into ``dest_dir/<version>``."""
    if version is None:
        pointer = s3.get_object(Bucket=bucket, Key=f"{prefix}/{LATEST_KEY}")["Body"].read()
        version = str(json.loads(pointer)["version"])
    root = f"{prefix}/{version}/"
    target = dest_dir / version
    paginator = s3.get_paginator("list_objects_v2")
    found = False
    for page in paginator.paginate(Bucket=bucket, Prefix=root):
        for item in page.get("Contents", []):
            relative = item["Key"][len(root) :]
            if not relative or ".." in Path(relative).parts:
                continue
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
            found = True
    if not found:
        raise FileNotFoundError(f"no bundle at s3://{bucket}/{root}")
    read_spec(target)  # a bundle without a valid spec is not a bundle
    return target
