"""The local stack comes from the SAM template and nothing else."""

from __future__ import annotations

import json
from urllib.parse import unquote_plus

from tests.conftest import TEMPLATE
from tests.local.probes import kinesis_probe
from wattstream.hosting.template import StackDescription, load_template


def test_stack_creates_every_template_resource(deploy_stack):
    stack = deploy_stack()

    template = load_template(TEMPLATE)
    # SAM names a layer version after its content (logical id + hash): match the prefix.
    deployed = set(stack.resources) | set(stack.not_emulated)
    sam_resources = {
        next((d for d in deployed if d.startswith(logical)), logical)
        if resource["Type"] == "AWS::Serverless::LayerVersion"
        else logical
        for logical, resource in template["Resources"].items()
    }
    conditional = {k for k, r in template["Resources"].items() if "Condition" in r}
    assert sam_resources - set(stack.not_emulated) - conditional <= set(stack.resources)
    assert not conditional & set(stack.resources)  # their conditions are false by default
    # Only access policies, the API Gateway front door and the shared code layer are
    # AWS-only; locally the HTTP API is served by uvicorn, access is not enforced, and the
    # runner imports shared/ from the installed project.
    assert set(stack.not_emulated.values()) <= {
        "AWS::SQS::QueuePolicy",
        "AWS::Lambda::Permission",
        "AWS::Lambda::LayerVersion",
        "AWS::CloudWatch::Alarm",
        "AWS::SNS::Subscription",
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Stage",
    }
    assert set(stack.outputs) == set(template["Outputs"])


def test_stack_stream_shards_follow_template_parameters(deploy_stack, clients):
    stack = deploy_stack(parameters={"ReadingsShardCount": "3"})
    kinesis = clients("kinesis")
    summary = kinesis.describe_stream_summary(StreamName=stack.outputs["ReadingsStreamName"])
    assert summary["StreamDescriptionSummary"]["OpenShardCount"] == 3
    summary = kinesis.describe_stream_summary(StreamName=stack.outputs["ForecastsStreamName"])
    assert summary["StreamDescriptionSummary"]["OpenShardCount"] == 2


def test_stack_applies_bucket_notifications_from_template(deploy_stack, clients):
    stack = deploy_stack()
    s3, sqs = clients("s3"), clients("sqs")
    s3.put_object(Bucket=stack.outputs["RawBucketName"], Key="reports/ignored.json", Body=b"x")
    s3.put_object(Bucket=stack.outputs["RawBucketName"], Key="uploads/a b+c.txt", Body=b"x")

    url = sqs.get_queue_url(QueueName=stack.outputs["RawEventsQueueUrl"].rsplit("/", 1)[1])
    bodies = [
        json.loads(m["Body"])
        for m in sqs.receive_message(QueueUrl=url["QueueUrl"], MaxNumberOfMessages=10)["Messages"]
    ]
    keys = [r["s3"]["object"]["key"] for b in bodies for r in b.get("Records", [])]
    assert len(keys) == 1
    assert "a+b%2Bc.txt" in keys[0]
    assert unquote_plus(keys[0]) == "uploads/a b+c.txt"  # the prefix filter holds


def test_stack_resolves_mappings_for_runner_and_round_trips(deploy_stack, tmp_path):
    stack = deploy_stack(kinesis_probe(BatchSize=7, MaximumRecordAgeInSeconds=120))

    (mapping,) = [m for m in stack.mappings if m.function_logical_id == "ProbeFunction"]
    assert mapping.source_kind == "kinesis"
    assert mapping.source_arn.endswith("/" + stack.outputs["ReadingsStreamName"])
    assert mapping.properties["BatchSize"] == 7
    assert mapping.properties["MaximumRecordAgeInSeconds"] == 120
    assert mapping.properties["DestinationConfig"]["OnFailure"]["Destination"].startswith(
        "arn:aws:sqs:"
    )
    assert stack.functions["ProbeFunction"].handler == "tests.local.probes.echo_handler"
    stack.save(tmp_path / "stack.json")
    assert StackDescription.load(tmp_path / "stack.json") == stack
