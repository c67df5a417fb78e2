"""Lambda entry point of the HTTP API (API Gateway HTTP API -> Mangum -> FastAPI).

The composition root: :func:`deps_from_environment` is the one place that reads settings
and builds boto3 clients, on the first invocation (never at import, so importing the
module is free and tests build the handler from fakes with :func:`build_handler`).
``AWS_ENDPOINT_URL`` points the clients at the local stack.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from mangum import Mangum

from services.ingest.adapters.quarantine import S3SqsQuarantine
from services.ingest.settings import IngestSettings
from services.ingest.shells.http_app import IngestHttpDeps, create_app
from shared.settings import AwsSettings
from shared.streams.factory import publisher_for

__all__ = ["build_handler", "deps_from_environment", "handler"]

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def build_handler(deps: IngestHttpDeps) -> LambdaHandler:
    """A Lambda handler serving the app, with request-scoped logs and EMF metrics."""
    asgi = Mangum(create_app(deps), lifespan="off")

    @deps.metrics.log_metrics
    @deps.logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return asgi(event, context)

    return handle


def deps_from_environment() -> IngestHttpDeps:
    """Real adapters from the function's environment (set by the SAM template)."""
    settings = IngestSettings()  # type: ignore[call-arg]  # read from the environment
    aws = AwsSettings()
    return IngestHttpDeps(
        publisher=publisher_for(settings.readings_stream_name, aws),
        quarantine=S3SqsQuarantine(
            settings.archive_bucket,
            settings.quarantine_queue_url,
            s3=aws.client("s3"),
            sqs=aws.client("sqs"),
        ),
    )


@functools.cache
def _default_handler() -> LambdaHandler:
    return build_handler(deps_from_environment())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The template's ``Handler``: built once per Lambda sandbox, on first use."""
    return _default_handler()(event, context)
