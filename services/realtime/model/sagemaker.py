"""SageMaker packaging and deployment of a realtime model bundle.

``model.tar.gz`` follows the SageMaker TensorFlow Serving container's multi-model layout::

    <model_name>/<serving_version>/saved_model.pb
    <model_name>/<serving_version>/variables/...
    code/inference.py     pre/post-processing (inference_code/inference.py)
    code/metadata.json    the bundle's ModelSpec, read by inference.py

TF Serving needs an integer version directory, so the bundle's version string lives in
``metadata.json`` and in the SageMaker resource names instead. The archive is
reproducible: members sorted, timestamps and owners zeroed.

Deployment creates (or reuses) a SageMaker model named after the bundle version, an
endpoint configuration for it, and creates the endpoint or points an existing one at the
new configuration (``UpdateEndpoint``: no downtime). Every client is injected.

Image: the official TensorFlow Serving inference image of AWS Deep Learning Containers,
``<account>.dkr.ecr.<region>.amazonaws.com/tensorflow-inference:<tf>-cpu`` (account
763104351884 in most regions; :data:`DLC_ACCOUNTS` lists the exceptions; see
https://github.com/aws/deep-learning-containers/blob/master/available_images.md).
"""

from __future__ import annotations

import gzip
import io
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from services.realtime.model.bundle import (
    KERAS_FILE,
    METADATA_FILE,
    MODELS_PREFIX,
    SAVED_MODEL_DIR,
    read_spec,
)

__all__ = [
    "DEFAULT_INSTANCE_TYPE",
    "DEFAULT_TF_VERSION",
    "DLC_ACCOUNTS",
    "INFERENCE_CODE",
    "SageMakerDeployment",
    "build_model_archive",
    "deploy_endpoint",
    "deploy_sagemaker",
    "resource_name",
    "tf_serving_image_uri",
    "upload_model_archive",
]

INFERENCE_CODE: Final = Path(__file__).resolve().parent / "inference_code" / "inference.py"
DEFAULT_MODEL_NAME: Final = "realtime"
DEFAULT_TF_VERSION: Final = "2.19.0"
DEFAULT_INSTANCE_TYPE: Final = "ml.m5.large"
DEFAULT_ACCOUNT: Final = "763104351884"
#: AWS Deep Learning Containers registries that are not the default account.
DLC_ACCOUNTS: Final = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "eu-south-1": "692866216735",
    "me-south-1": "217643126080",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
}


def tf_serving_image_uri(region: str, tf_version: str = DEFAULT_TF_VERSION) -> str:
    """The official SageMaker TF Serving CPU image for ``region``.

    >>> tf_serving_image_uri("eu-west-1")
    '763104351884.dkr.ecr.eu-west-1.amazonaws.com/tensorflow-inference:2.19.0-cpu'
    """
    account = DLC_ACCOUNTS.get(region, DEFAULT_ACCOUNT)
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{suffix}/tensorflow-inference:{tf_version}-cpu"


def resource_name(*parts: str) -> str:
    """A SageMaker resource name (``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``) from parts.

    >>> resource_name("wattstream", "lstm15-20250101-ab12cd34", "config")
    'wattstream-lstm15-20250101-ab12cd34-config'
    """
    name = re.sub(r"[^a-zA-Z0-9]+", "-", "-".join(parts)).strip("-")
    return name[:63].rstrip("-")


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    archive.addfile(info, io.BytesIO(data))


def build_model_archive(
    bundle_dir: Path,
    out_path: Path,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    serving_version: int = 1,
) -> Path:
    """Write ``model.tar.gz`` for the bundle (its SavedModel, exported from model.keras
    when the bundle has none, plus ``code/``)."""
    read_spec(bundle_dir)
    with tempfile.TemporaryDirectory() as scratch:
        saved_model = bundle_dir / SAVED_MODEL_DIR
        if not (saved_model / "saved_model.pb").exists():
            from services.realtime.model.export import export_saved_model, load_keras_model

            if not (bundle_dir / KERAS_FILE).exists():
                raise FileNotFoundError(f"{bundle_dir} has neither a SavedModel nor {KERAS_FILE}")
            saved_model = export_saved_model(
                load_keras_model(bundle_dir), Path(scratch) / SAVED_MODEL_DIR
            )
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with (
            open(out_path, "wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as zipped,
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
        ):
            root = f"{model_name}/{serving_version}"
            for path in sorted(p for p in saved_model.rglob("*") if p.is_file()):
                _add(
                    archive, f"{root}/{path.relative_to(saved_model).as_posix()}", path.read_bytes()
                )
            _add(archive, "code/inference.py", INFERENCE_CODE.read_bytes())
            _add(archive, f"code/{METADATA_FILE}", (bundle_dir / METADATA_FILE).read_bytes())
    return out_path


def upload_model_archive(
    archive: Path, *, bucket: str, s3: Any, version: str, prefix: str = MODELS_PREFIX
) -> str:
    """Upload the archive next to its bundle; returns the ``s3://`` URL SageMaker reads."""
    key = f"{prefix}/{version}/sagemaker/model.tar.gz"
    with open(archive, "rb") as body:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}"


@dataclass(frozen=True)
class SageMakerDeployment:
    """What was created (or reused) for one model version."""

    model_name: str
    endpoint_config_name: str
    endpoint_name: str
    model_data_url: str
    image_uri: str
    endpoint_action: str  # "created", "updated" or "unchanged"


def _describe(call: Any, **kwargs: Any) -> dict[str, Any] | None:
    """A ``Describe*`` answer, or None when the resource does not exist."""
    try:
        return dict(call(**kwargs))
    except Exception as error:  # botocore ClientError: ValidationException "Could not find"
        response = getattr(error, "response", {}) or {}
        message = str(response.get("Error", {}).get("Message", error)).lower()
        if "could not find" in message or "not found" in message or "does not exist" in message:
            return None
        raise


def deploy_endpoint(
    sagemaker: Any,
    *,
    version: str,
    model_data_url: str,
    role_arn: str,
    image_uri: str,
    endpoint_name: str,
    instance_type: str = DEFAULT_INSTANCE_TYPE,
    instance_count: int = 1,
    serving_model_name: str = DEFAULT_MODEL_NAME,
    name_prefix: str = "wattstream",
) -> SageMakerDeployment:
    """Create the model and endpoint configuration of ``version``, then create the
    endpoint, or update it when it serves another configuration. Rerunning with the same
    version changes nothing."""
    model_name = resource_name(name_prefix, version)
    config_name = resource_name(name_prefix, version, "config")
    if _describe(sagemaker.describe_model, ModelName=model_name) is None:
        sagemaker.create_model(
            ModelName=model_name,
            ExecutionRoleArn=role_arn,
            PrimaryContainer={
                "Image": image_uri,
                "ModelDataUrl": model_data_url,
                "Environment": {
                    "SAGEMAKER_TFS_DEFAULT_MODEL_NAME": serving_model_name,
                    "WATTSTREAM_MODEL_VERSION": version,
                },
            },
            Tags=[{"Key": "wattstream:model-version", "Value": version}],
        )
    if _describe(sagemaker.describe_endpoint_config, EndpointConfigName=config_name) is None:
        sagemaker.create_endpoint_config(
            EndpointConfigName=config_name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": model_name,
                    "InitialInstanceCount": instance_count,
                    "InstanceType": instance_type,
                    "InitialVariantWeight": 1.0,
                }
            ],
        )
    current = _describe(sagemaker.describe_endpoint, EndpointName=endpoint_name)
    if current is None:
        sagemaker.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)
        action = "created"
    elif current.get("EndpointConfigName") == config_name:
        action = "unchanged"
    else:
        sagemaker.update_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)
        action = "updated"
    return SageMakerDeployment(
        model_name, config_name, endpoint_name, model_data_url, image_uri, action
    )


def deploy_sagemaker(
    bundle_dir: Path,
    *,
    bucket: str,
    role_arn: str,
    s3: Any,
    sagemaker: Any,
    region: str,
    endpoint_name: str = "wattstream-realtime",
    image_uri: str | None = None,
    instance_type: str = DEFAULT_INSTANCE_TYPE,
    instance_count: int = 1,
) -> SageMakerDeployment:
    """Package the bundle, upload it to the models bucket and deploy it: what
    ``wattstream realtime sagemaker-deploy`` runs."""
    version = read_spec(bundle_dir).version
    scratch = Path(tempfile.mkdtemp(prefix="wattstream-sagemaker-"))
    try:
        archive = build_model_archive(bundle_dir, scratch / "model.tar.gz")
        url = upload_model_archive(archive, bucket=bucket, s3=s3, version=version)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return deploy_endpoint(
        sagemaker,
        version=version,
        model_data_url=url,
        role_arn=role_arn,
        image_uri=image_uri or tf_serving_image_uri(region),
        endpoint_name=endpoint_name,
        instance_type=instance_type,
        instance_count=instance_count,
    )
