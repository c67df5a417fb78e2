"""Typed settings of the ingest shells; SAM passes every resource name as a variable."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    """Resource names for ingest's Lambda/KCL/faust shells (never defaulted in the core)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    readings_stream_name: str = Field(validation_alias="READINGS_STREAM_NAME")
    raw_bucket: str = Field(validation_alias="RAW_BUCKET")
    archive_bucket: str = Field(validation_alias="ARCHIVE_BUCKET")
    quarantine_queue_url: str = Field(validation_alias="QUARANTINE_QUEUE_URL")
