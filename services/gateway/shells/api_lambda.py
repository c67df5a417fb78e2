"""Lambda entry point of the gateway API (API Gateway HTTP API -> Mangum -> FastAPI).

The composition root: :func:`deps_from_environment` is the one place that reads settings
and builds boto3 clients, on the first invocation (never at import). Local tools (the
CLI, the benchmark, tests) call it too, adding what only exists locally: a replay
starter, wired by the caller to ingest's replay (the gateway never imports ingest).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from mangum import Mangum

from services.gateway.ports import ReplayStarter
from services.gateway.shells.api_app import ApiDeps, create_app
from shared.shell import (
    Environment,
    Handler,
    LambdaEntry,
    environment_or_process,
    logger_for,
    metrics_for,
)

__all__ = ["dead_letter_queues", "deps_from_environment", "handler"]


def _serve(deps: ApiDeps) -> Handler:
    """The app behind Mangum, counting requests and responses by class."""
    asgi = Mangum(create_app(deps), lifespan="off")
    metrics = deps.metrics

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        reply = asgi(event, context)
        status = int(reply.get("statusCode", 500))
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name=f"Responses{status // 100}xx", unit=MetricUnit.Count, value=1)
        return reply

    return handle


def dead_letter_queues(outputs: Mapping[str, str]) -> dict[str, str]:
    """The failure and dead-letter queues among a stack's outputs, by short name.

    For ``GATEWAY_DEAD_LETTER_QUEUES`` (a JSON object) where the stack's outputs are known:
    ``{"ReadingsFailureQueueUrl": url}`` -> ``{"ReadingsFailureQueue": url}``.
    """
    return {
        name.removesuffix("Url"): url
        for name, url in sorted(outputs.items())
        if name.endswith(("DeadLetterQueueUrl", "FailureQueueUrl"))
    }


def deps_from_environment(
    environment: Environment | None = None, *, replay: ReplayStarter | None = None
) -> ApiDeps:
    """Real adapters from the function's environment (set by the SAM template; None: ours)."""
    from services.gateway.adapters.aws import S3Objects, S3Uploads, SqsQueueDepths
    from services.gateway.adapters.dynamo_store import DynamoGatewayStore
    from services.gateway.settings import GatewayApiSettings
    from shared.settings import AwsSettings, settings_from

    env = environment_or_process(environment)
    settings = settings_from(GatewayApiSettings, env)
    aws = settings_from(AwsSettings, env)
    s3, sqs = aws.client("s3"), aws.client("sqs")
    objects = S3Objects(s3=s3)
    queues = {"QuarantineQueue": settings.quarantine_queue_url, **settings.dead_letter_queues}
    return ApiDeps(
        store=DynamoGatewayStore(settings.gateway_table, client=aws.client("dynamodb")),
        token_secret=settings.token_secret.get_secret_value(),
        objects=objects,
        models_bucket=settings.models_bucket,
        plot_cache=objects,  # rendered monthly plots, under plots/ in the models bucket
        queues=SqsQueueDepths(queues, sqs=sqs),
        replay=replay,
        uploads=S3Uploads(settings.raw_bucket, s3=s3),
        logger=logger_for(env),
        metrics=metrics_for(env),
    )


handler = LambdaEntry(
    deps_from_environment, _serve, correlation_id_path=correlation_paths.API_GATEWAY_HTTP
)
"""The template's ``GatewayApiFunction`` entry point (:class:`shared.shell.LambdaEntry`)."""
