"""Typed settings shared by every composition root.

Only shells read the environment, and only through these classes: the pure cores get
plain values. A composition root reads ONE mapping (the function's environment, which
on Lambda is ``os.environ``): :func:`settings_from` builds any settings class from that
mapping alone, so several functions can run in one process, each with its own
environment. ``AWS_ENDPOINT_URL`` from that mapping is what lets the same code talk to
the local stack or to real AWS by configuration alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

__all__ = ["AwsSettings", "settings_from"]

S = TypeVar("S", bound=BaseSettings)


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``.

    Same rules as the environment (aliases, prefixes, case, JSON for complex fields), so a
    class reads a mapping exactly as it would read the process environment.
    """

    def __init__(self, settings_cls: type[BaseSettings], environment: Mapping[str, str]):
        self._environment = dict(environment)
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environment, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def settings_from(cls: type[S], environment: Mapping[str, str]) -> S:
    """``cls`` built from ``environment`` only: nothing is read from ``os.environ``.

    >>> settings_from(AwsSettings, {"AWS_REGION": "eu-west-1"}).region
    'eu-west-1'
    """
    return cls(_build_sources=((_MappingSource(cls, environment),), {}))


class AwsSettings(BaseSettings):
    """Where AWS is: a region, for the local stack an endpoint URL, and credentials if given.

    :meth:`client` passes all of them to boto3 explicitly, and tells boto3 not to look up
    an endpoint URL of its own (it would read ``AWS_ENDPOINT_URL`` from ``os.environ``),
    so settings built by :func:`settings_from` decide alone where the clients go.
    Credentials absent from the settings come from boto3's usual chain (its default
    session), which also keeps a role's credentials refreshing on ECS/EC2 hosts.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    endpoint_url: str | None = Field(default=None, validation_alias="AWS_ENDPOINT_URL")
    max_attempts: int = Field(default=5, validation_alias="WATTSTREAM_AWS_MAX_ATTEMPTS", ge=1)
    access_key_id: str | None = Field(
        default=None, validation_alias="AWS_ACCESS_KEY_ID", repr=False
    )
    secret_access_key: str | None = Field(
        default=None, validation_alias="AWS_SECRET_ACCESS_KEY", repr=False
    )
    session_token: str | None = Field(
        default=None, validation_alias="AWS_SESSION_TOKEN", repr=False
    )

    def client(self, service: str) -> Any:
        """A boto3 client with standard retries; built in composition roots only."""
        import boto3
        from botocore.config import Config

        config = Config(
            region_name=self.region,
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            max_pool_connections=50,  # adapters write in parallel threads
            ignore_configured_endpoint_urls=True,  # only ``endpoint_url`` below decides
        )
        explicit = bool(self.access_key_id and self.secret_access_key)
        return boto3.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id if explicit else None,
            aws_secret_access_key=self.secret_access_key if explicit else None,
            aws_session_token=self.session_token if explicit else None,
            config=config,
        )
