"""Typed settings of the monthly shells; SAM passes every resource name as a variable."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MonthlySettings"]


class MonthlySettings(BaseSettings):
    """Where the monthly function reads summaries and writes forecasts (never defaulted).

    ``MONTHLY_PLOTS=false`` writes no components plot data (a few kB and ~1 ms per forecast;
    the PNG itself is rendered by the gateway when first requested), so results have no plot.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    archive_bucket: str = Field(validation_alias="ARCHIVE_BUCKET")
    models_bucket: str = Field(validation_alias="MODELS_BUCKET")
    plots: bool = Field(default=True, validation_alias="MONTHLY_PLOTS")
