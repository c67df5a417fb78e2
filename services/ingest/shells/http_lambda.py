"""Lambda entry point of the HTTP API (API Gateway HTTP API -> Mangum -> FastAPI).

The composition root: :func:`deps_from_environment` is the one place that reads settings
and builds boto3 clients, from the mapping it is given (the function's environment), on
the first invocation (never at import, so importing the module is free and tests build
the handler from fakes with ``handler.build(deps)``). ``AWS_ENDPOINT_URL`` points the
clients at the local stack.
"""

from __future__ import annotations

from aws_lambda_powertools.logging import correlation_paths
from mangum import Mangum

from services.ingest.adapters.quarantine import S3SqsQuarantine
from services.ingest.settings import IngestSettings
from services.ingest.shells.http_app import IngestHttpDeps, create_app
from shared.settings import AwsSettings, settings_from
from shared.shell import (
    Environment,
    Handler,
    LambdaEntry,
    environment_or_process,
    logger_for,
    metrics_for,
)
from shared.streams.factory import StreamBusSettings, publisher_for

__all__ = ["deps_from_environment", "handler"]


def _serve(deps: IngestHttpDeps) -> Handler:
    """The app behind Mangum (one ASGI adapter per deps)."""
    return Mangum(create_app(deps), lifespan="off")


def deps_from_environment(environment: Environment | None = None) -> IngestHttpDeps:
    """Real adapters from the function's environment (set by the SAM template; None: ours)."""
    env = environment_or_process(environment)
    settings = settings_from(IngestSettings, env)
    aws = settings_from(AwsSettings, env)
    return IngestHttpDeps(
        publisher=publisher_for(
            settings.readings_stream_name, aws, settings_from(StreamBusSettings, env)
        ),
        quarantine=S3SqsQuarantine(
            settings.archive_bucket,
            settings.quarantine_queue_url,
            s3=aws.client("s3"),
            sqs=aws.client("sqs"),
        ),
        logger=logger_for(env),
        metrics=metrics_for(env),
    )


handler = LambdaEntry(
    deps_from_environment, _serve, correlation_id_path=correlation_paths.API_GATEWAY_HTTP
)
"""The template's ``IngestHttpFunction`` entry point (:class:`shared.shell.LambdaEntry`)."""
