"""Typed settings of the gateway's shells; SAM passes every resource name as a variable."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["GatewayApiSettings", "GatewayConsumerSettings"]


class GatewayConsumerSettings(BaseSettings):
    """The query-store builders (readings, forecasts, results consumers)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    gateway_table: str = Field(validation_alias="GATEWAY_TABLE")
    quarantine_queue_url: str = Field(validation_alias="QUARANTINE_QUEUE_URL")


class GatewayApiSettings(GatewayConsumerSettings):
    """The HTTP API: the table, the token key, and what the pipeline routes look at.

    ``dead_letter_queues`` (``GATEWAY_DEAD_LETTER_QUEUES``, a JSON object name -> queue
    URL) lists the failure and dead-letter queues shown by ``/health/pipeline``; the
    quarantine queue is always shown.
    """

    token_secret: SecretStr = Field(validation_alias="TOKEN_SECRET", min_length=32)
    models_bucket: str = Field(validation_alias="MODELS_BUCKET")
    raw_bucket: str = Field(validation_alias="RAW_BUCKET")
    dead_letter_queues: dict[str, str] = Field(
        default_factory=dict, validation_alias="GATEWAY_DEAD_LETTER_QUEUES"
    )
