"""Typed settings of the ingest shells; SAM passes every resource name as a variable."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.ingest.core.upload_guard import DEFAULT_UPLOAD_LIMITS, UploadLimits

_UPLOAD = DEFAULT_UPLOAD_LIMITS


class IngestSettings(BaseSettings):
    """Resource names for ingest's Lambda/KCL/faust shells (never defaulted in the core)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    readings_stream_name: str = Field(validation_alias="READINGS_STREAM_NAME")
    raw_bucket: str = Field(validation_alias="RAW_BUCKET")
    archive_bucket: str = Field(validation_alias="ARCHIVE_BUCKET")
    quarantine_queue_url: str = Field(validation_alias="QUARANTINE_QUEUE_URL")


class UploadSettings(BaseSettings):
    """The batch upload's limits (``WATTSTREAM_UPLOAD_*``); defaults and why they are
    safe: :class:`services.ingest.core.upload_guard.UploadLimits`.

    ``WATTSTREAM_UPLOAD_MAX_ROWS=0`` and ``WATTSTREAM_UPLOAD_MAX_DUPLICATE_RATIO=0``
    switch the two optional limits off.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_prefix="WATTSTREAM_UPLOAD_")

    max_expanded_bytes: int = Field(default=_UPLOAD.max_expanded_bytes, ge=1)
    max_compression_ratio: float = Field(default=_UPLOAD.max_compression_ratio, gt=1)
    ratio_check_after_bytes: int = Field(default=_UPLOAD.ratio_check_after_bytes, ge=0)
    max_line_bytes: int = Field(default=_UPLOAD.max_line_bytes, ge=1)
    max_rows: int = Field(default=_UPLOAD.max_rows or 0, ge=0)
    max_duplicate_ratio: float = Field(default=_UPLOAD.max_duplicate_ratio or 0.0, ge=0, lt=1)
    duplicate_check_after_rows: int = Field(default=_UPLOAD.duplicate_check_after_rows, ge=0)

    def limits(self) -> UploadLimits:
        """The core's limits (0 = off for the optional ones)."""
        return UploadLimits(
            max_expanded_bytes=self.max_expanded_bytes,
            max_compression_ratio=self.max_compression_ratio,
            ratio_check_after_bytes=self.ratio_check_after_bytes,
            max_line_bytes=self.max_line_bytes,
            max_rows=self.max_rows or None,
            max_duplicate_ratio=self.max_duplicate_ratio or None,
            duplicate_check_after_rows=self.duplicate_check_after_rows,
        )
