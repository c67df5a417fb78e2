"""Typed settings of the realtime shells; SAM passes every resource name as a variable."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.realtime.core.anomaly import DEFAULT_THRESHOLD


class RealtimeSettings(BaseSettings):
    """Resources and model choice of the realtime consumer (never defaulted in the core).

    The model bundle (``metadata.json`` + ``model.tflite`` / ``model.keras``) is, in this
    order: the directory ``MODEL_BUNDLE``; the version ``MODEL_VERSION`` (``latest`` for
    the newest) downloaded from ``MODELS_BUCKET``; else the newest bundle shipped under
    ``services/realtime/artifacts/``, so a deployment needs no download.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    state_table: str = Field(validation_alias="STATE_TABLE")
    forecasts_stream_name: str = Field(validation_alias="FORECASTS_STREAM_NAME")
    model_backend: Literal["litert", "tensorflow", "sagemaker"] = Field(
        default="litert", validation_alias="MODEL_BACKEND"
    )
    sagemaker_endpoint_name: str = Field(default="", validation_alias="SAGEMAKER_ENDPOINT_NAME")
    models_bucket: str | None = Field(default=None, validation_alias="MODELS_BUCKET")
    model_bundle: Path | None = Field(default=None, validation_alias="MODEL_BUNDLE")
    model_version: str | None = Field(default=None, validation_alias="MODEL_VERSION")
    model_threads: int = Field(default=1, ge=1, validation_alias="MODEL_THREADS")
    #: Fleet model bundle for energy-only meters (default: the newest one shipped under
    #: ``services/realtime/artifacts/fleet/``).
    fleet_bundle: Path | None = Field(default=None, validation_alias="FLEET_MODEL_BUNDLE")
    #: Multiple of the anomaly detector's limits above which a bin is flagged (the default
    #: was measured: at most 1 % of normal bins flagged; ``python -m bench anomalies``).
    anomaly_threshold: float = Field(
        default=DEFAULT_THRESHOLD, gt=0, validation_alias="ANOMALY_THRESHOLD"
    )

    @model_validator(mode="after")
    def _endpoint_for_sagemaker(self) -> RealtimeSettings:
        if self.model_backend == "sagemaker" and not self.sagemaker_endpoint_name:
            raise ValueError("MODEL_BACKEND=sagemaker needs SAGEMAKER_ENDPOINT_NAME")
        if self.model_version and not self.models_bucket:
            raise ValueError("MODEL_VERSION needs MODELS_BUCKET to download the bundle from")
        return self
