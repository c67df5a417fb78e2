"""Typed settings of the monthly shells; SAM passes every resource name as a variable."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MonthlySettings"]


class MonthlySettings(BaseSettings):
    """Where the monthly function reads summaries and writes forecasts (never defaulted).

    ``MONTHLY_PLOTS=false`` skips the components plot (it is ~half of a forecast's CPU).
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    archive_bucket: str = Field(validation_alias="ARCHIVE_BUCKET")
    models_bucket: str = Field(validation_alias="MODELS_BUCKET")
    plots: bool = Field(default=True, validation_alias="MONTHLY_PLOTS")
