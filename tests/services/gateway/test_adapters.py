"""The small AWS adapters (moto), the replay starter and the API's Lambda entry point."""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import replace

import pytest
from aws_lambda_powertools import Metrics

from services.gateway.adapters.aws import S3Objects, S3Uploads, SqsQueueDepths
from services.gateway.adapters.replay import ThreadedReplayStarter
from services.gateway.core.pipeline import ReplayRequest
from services.gateway.ports import ObjectMissing, ReplayBusy
from services.gateway.settings import GatewayApiSettings
from services.gateway.shells.api_lambda import dead_letter_queues
from services.gateway.shells.api_lambda import handler as api_entry
from shared.quarantine import SqsQuarantine
from shared.schema import Quarantined, StreamCoordinates
from testing.reliability.gateway_world import A, build_world
from wattstream.hosting.lambda_model import LambdaContext


@pytest.fixture
def stack(deploy_stack):
    return deploy_stack()


def _queue_url(clients, stack, output):
    return clients("sqs").get_queue_url(QueueName=stack.outputs[output].rsplit("/", 1)[1])[
        "QueueUrl"
    ]


def test_sqs_quarantine_and_queue_depths(stack, clients):
    url = _queue_url(clients, stack, "QuarantineQueueUrl")
    item = Quarantined(
        original=b"\x00" * 300_000,  # too big for a message: its coordinates are sent
        reason="undecodable record (bad_magic): no",
        source="kinesis:readings:gateway",
        coordinates=StreamCoordinates(
            stream="readings", shard_or_partition="shardId-0", sequence_or_offset="42"
        ),
        quarantined_at=dt.datetime(2007, 4, 1, tzinfo=dt.UTC),
    )
    small = item.model_copy(update={"original": b"abc"})

    SqsQuarantine(url, sqs=clients("sqs")).quarantine([item, small])

    depths = SqsQueueDepths(
        {"QuarantineQueue": url, "Missing": url + "-nope"}, sqs=clients("sqs")
    ).depths()
    assert depths == {"QuarantineQueue": 2, "Missing": None}
    bodies = [
        json.loads(m["Body"])
        for m in clients("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    ]
    pointer = next(b for b in bodies if b.get("pointer"))
    assert pointer["coordinates"]["sequence_or_offset"] == "42"
    assert pointer["original_bytes"] == 300_000
    assert Quarantined.model_validate(next(b for b in bodies if not b.get("pointer"))) == small


def test_s3_uploads_and_objects(stack, clients):
    uploads = S3Uploads(stack.outputs["RawBucketName"], s3=clients("s3"))
    uploads.put("uploads/a.txt", b"rows")

    assert uploads.report("reports/uploads/a.txt.json") is None
    clients("s3").put_object(
        Bucket=stack.outputs["RawBucketName"],
        Key="reports/uploads/a.txt.json",
        Body=b'{"status": "ok"}',
    )
    assert uploads.report("reports/uploads/a.txt.json") == {"status": "ok"}
    objects = S3Objects(s3=clients("s3"))
    assert objects.read(stack.outputs["RawBucketName"], "uploads/a.txt") == b"rows"
    with pytest.raises(ObjectMissing):
        objects.read(stack.outputs["RawBucketName"], "uploads/none.txt")
    models = stack.outputs["ModelsBucketName"]
    objects.write(models, "plots/monthly/a.png", b"\x89PNG", "image/png")
    head = clients("s3").head_object(Bucket=models, Key="plots/monthly/a.png")
    assert head["ContentType"] == "image/png"
    assert objects.read(models, "plots/monthly/a.png") == b"\x89PNG"


def test_replay_starter_tracks_progress_and_refuses_a_second_run():
    release = threading.Event()
    seen = []

    class Report:
        fraction, readings_published = 0.5, 1440

    def run(request, on_progress):
        seen.append(request)
        on_progress(Report())
        release.wait(10)

    starter = ThreadedReplayStarter(run)
    job = starter.start(ReplayRequest(households=2))
    with pytest.raises(ReplayBusy):
        starter.start(ReplayRequest())
    while starter.jobs()[0].readings_published == 0:
        threading.Event().wait(0.01)
    assert starter.jobs()[0].fraction == 0.5
    release.set()
    starter.threads[0].join(10)

    (done,) = starter.jobs()
    assert (done.id, done.state, done.fraction) == (job.id, "finished", 1.0)
    assert seen == [ReplayRequest(households=2)]


def test_replay_starter_reports_a_failed_run():
    def run(request, on_progress):
        raise OSError("stream unavailable")

    starter = ThreadedReplayStarter(run)
    starter.start(ReplayRequest())
    starter.threads[0].join(10)

    (job,) = starter.jobs()
    assert job.state == "failed"
    assert job.error == "OSError: stream unavailable"


def test_api_settings_read_dead_letter_queues(monkeypatch):
    outputs = {"ReadingsFailureQueueUrl": "u1", "RawEventsDeadLetterQueueUrl": "u2", "X": "y"}
    monkeypatch.setenv("GATEWAY_DEAD_LETTER_QUEUES", json.dumps(dead_letter_queues(outputs)))
    for name, value in {
        "GATEWAY_TABLE": "t",
        "QUARANTINE_QUEUE_URL": "q",
        "TOKEN_SECRET": "s" * 32,
        "MODELS_BUCKET": "m",
        "RAW_BUCKET": "r",
    }.items():
        monkeypatch.setenv(name, value)

    settings = GatewayApiSettings()

    assert settings.dead_letter_queues == {
        "RawEventsDeadLetterQueue": "u2",
        "ReadingsFailureQueue": "u1",
    }


def test_api_lambda_serves_an_http_api_event():
    world = build_world()
    handler = api_entry.build(
        replace(
            world.app.state.deps,
            metrics=Metrics(namespace="wattstream-test", service="gateway-api-test"),
        )
    )
    event = {
        "version": "2.0",
        "routeKey": "ANY /{proxy+}",
        "rawPath": f"/households/{A}/forecast",
        "rawQueryString": "",
        "headers": {"authorization": f"Bearer {world.token(A)}", "host": "api.example"},
        "requestContext": {
            "http": {
                "method": "GET",
                "path": f"/households/{A}/forecast",
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.1",
                "userAgent": "test",
            },
            "requestId": "r1",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }
    context = LambdaContext("gateway-api", "arn:aws:lambda:us-east-1:1:function:api", 512, 30)

    reply = handler(event, context)

    assert reply["statusCode"] == 200
    assert json.loads(reply["body"])["household_id"] == A
