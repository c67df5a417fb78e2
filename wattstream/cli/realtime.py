"""``wattstream realtime``: the realtime model's deployment (SageMaker)."""

from __future__ import annotations

from pathlib import Path

import click

from wattstream.cli.common import console, load_stack, local_settings, use_stack_environment


@click.group()
def realtime() -> None:
    """The realtime model's deployment."""


@realtime.command("sagemaker-deploy")
@click.option(
    "--bundle",
    "bundle_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Model bundle folder (default: the shipped model).",
)
@click.option("--role-arn", required=True, help="SageMaker execution role ARN.")
@click.option("--endpoint-name", default="wattstream-realtime", show_default=True)
@click.option("--instance-type", default="ml.m5.large", show_default=True)
@click.pass_context
def sagemaker_deploy(
    ctx: click.Context,
    bundle_dir: Path | None,
    role_arn: str,
    endpoint_name: str,
    instance_type: str,
) -> None:
    """Package the model for TF Serving, upload it and create the SageMaker endpoint.

    Against the local stack when one is running (moto emulates the control plane),
    otherwise against the AWS account of your credentials (set MODELS_BUCKET).
    """
    import os

    from services.realtime.model.bundle import shipped_bundle_dir
    from services.realtime.model.sagemaker import deploy_sagemaker
    from shared.settings import AwsSettings

    settings = local_settings(ctx)
    if settings.stack_file.exists():
        use_stack_environment(load_stack(settings), "RealtimeFunction")
    bucket = os.environ.get("MODELS_BUCKET")
    if not bucket:
        raise click.UsageError("no local stack running and MODELS_BUCKET is not set")
    aws = AwsSettings()
    deployment = deploy_sagemaker(
        bundle_dir or shipped_bundle_dir(),
        bucket=bucket,
        role_arn=role_arn,
        s3=aws.client("s3"),
        sagemaker=aws.client("sagemaker"),
        region=aws.region,
        endpoint_name=endpoint_name,
        instance_type=instance_type,
    )
    console.print(deployment)
