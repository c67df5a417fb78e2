"""Typed settings shared by every composition root.

Only shells read the environment, and only through these classes: the pure cores get
plain values. ``AWS_ENDPOINT_URL`` is honoured by boto3 itself, which is what lets the
same code talk to the embedded local stack or to real AWS by configuration alone.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AwsSettings(BaseSettings):
    """Where AWS is: a region and, for the local stack, an endpoint URL."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    endpoint_url: str | None = Field(default=None, validation_alias="AWS_ENDPOINT_URL")
    max_attempts: int = Field(default=5, validation_alias="WATTSTREAM_AWS_MAX_ATTEMPTS", ge=1)

    def client(self, service: str) -> Any:
        """A boto3 client with adaptive retries; built in composition roots only."""
        import boto3
        from botocore.config import Config

        config = Config(
            region_name=self.region,
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            max_pool_connections=50,  # adapters write in parallel threads
        )
        return boto3.client(service, endpoint_url=self.endpoint_url, config=config)
