"""The HTTP endpoint: FastAPI with fakes, the Lambda path with checked-in API Gateway
events, and the composition root against the local stack."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aws_lambda_powertools import Logger, Metrics
from fastapi import Request
from fastapi.testclient import TestClient

from services.ingest.core.intake import IntakeLimits
from services.ingest.shells import http_lambda
from services.ingest.shells.http_app import IngestHttpDeps, _read_body, create_app
from shared.batch import ReadingBatch
from shared.codec import decode_record
from shared.streams.ports import PublishError, PublishReport, StreamRecord
from shared.uci import UCI_HEADER
from testing.reliability.bad_batch import bad_batch_body
from tests.services.ingest.fakes import MemoryPublisher, MemoryQuarantine
from wattstream.hosting.lambda_model import LambdaContext

EVENTS = Path(__file__).resolve().parents[2] / "events"
NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
ROW = "1/4/2007;00:{:02d}:00;3.480;0.238;239.530;14.400;2.000;1.000;18.000\r\n"


def reading(minute: int = 0, **fields: Any) -> dict[str, Any]:
    item = {
        "household_id": "h1",
        "timestamp": f"2007-04-01T00:{minute:02d}:00Z",
        "global_active_power_kw": 3.48,
    }
    item.update(fields)
    return item


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def lambda_context(name: str = "IngestHttpFunction") -> LambdaContext:
    return LambdaContext(
        function_name=name,
        invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        memory_limit_in_mb=512,
        timeout_s=60,
    )


def published(records: Sequence[StreamRecord]) -> dict[str, ReadingBatch]:
    """Decoded readings per household, checking each record's key is its household."""
    batches: dict[str, list[ReadingBatch]] = {}
    for record in records:
        batch = decode_record(record.data)
        assert batch.household_id == record.partition_key
        batches.setdefault(batch.household_id, []).append(batch)
    return {h: ReadingBatch.concat(b) for h, b in batches.items()}


def stream_records_on(clients: Any, stream: str) -> list[StreamRecord]:
    """Every record on a Kinesis stream, from the start of each shard."""
    kinesis = clients("kinesis")
    records = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            reply = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            records += [StreamRecord(r["PartitionKey"], r["Data"]) for r in reply["Records"]]
            if not reply["Records"]:
                break
            iterator = reply.get("NextShardIterator")
    return records


class FailingPublisher:
    def publish(self, records: Sequence[StreamRecord]) -> PublishReport:
        raise PublishError("stream throttled", failed=records, error_codes=["Throttled"])


@pytest.fixture
def metrics() -> Metrics:
    metrics = Metrics(namespace="wattstream-test")
    metrics.clear_metrics()  # powertools keeps metrics per process, across instances
    return metrics


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
def quarantine() -> MemoryQuarantine:
    return MemoryQuarantine()


@pytest.fixture
def deps(publisher, quarantine, metrics) -> IngestHttpDeps:
    return IngestHttpDeps(
        publisher=publisher,
        quarantine=quarantine,
        clock=lambda: NOW,
        logger=Logger(service="ingest-http-test"),
        metrics=metrics,
    )


@pytest.fixture
def client(deps) -> TestClient:
    return TestClient(create_app(deps))


def post_json(client: TestClient, payload: Any) -> Any:
    return client.post("/readings", json=payload)


# --------------------------------------------------------------------------- FastAPI


def test_http_all_accepted_answers_200_and_publishes_sorted_readings(client, publisher):
    response = post_json(client, [reading(2), reading(0), reading(1, household_id="h2")])

    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "accepted"
    assert answer["totals"]["accepted"] == 3
    assert [o["status"] for o in answer["outcomes"]] == ["accepted"] * 3
    batches = published(publisher.records)
    assert np.all(np.diff(batches["h1"].timestamps_us) > 0)
    assert len(batches["h2"]) == 1


def test_http_some_rejected_answers_207_with_each_reading_and_why(client, publisher, quarantine):
    payload = {"readings": [reading(0), reading(1, voltage_v=0), reading(0)]}

    response = post_json(client, payload)

    assert response.status_code == 207
    answer = response.json()
    assert answer["status"] == "partial"
    assert [(o["index"], o["status"], o["code"]) for o in answer["outcomes"]] == [
        (0, "accepted", None),
        (1, "rejected", "implausible_voltage"),
        (2, "duplicate", "duplicate"),
    ]
    assert "voltage_v = 0" in answer["outcomes"][1]["reason"]
    assert answer["totals"] == {
        "received": 3,
        "accepted": 1,
        "rejected": 1,
        "duplicates": 1,
        "missing": 0,
        "rejected_by_code": {"implausible_voltage": 1},
        "superseded": 0,
    }
    (item,) = quarantine.items
    assert json.loads(item.original) == payload["readings"][1]
    assert item.source == "http"
    assert len(published(publisher.records)["h1"]) == 1


def test_http_nothing_accepted_answers_400_and_publishes_nothing(client, publisher, quarantine):
    response = post_json(client, [reading(0, global_active_power_kw=-1), "x"])

    assert response.status_code == 400
    assert response.json()["status"] == "rejected"
    assert response.json()["totals"]["rejected"] == 2
    assert publisher.records == []
    assert len(quarantine.items) == 2


def test_http_only_duplicates_beside_accepted_is_200(client):
    response = post_json(client, [reading(0), reading(0), reading(0)])

    assert response.status_code == 200
    assert response.json()["totals"]["duplicates"] == 2


def test_http_malformed_json_answers_400_and_keeps_the_body(client, quarantine):
    response = client.post(
        "/readings", content=b'[{"household_id": ', headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert response.json()["outcomes"] == []
    assert quarantine.items[0].original == b'[{"household_id": '


def test_http_csv_with_household_accepts_rows_and_counts_gaps(client, publisher):
    body = (
        UCI_HEADER + "\r\n" + ROW.format(0) + "1/4/2007;00:01:00;?;?;?;?;?;?;\r\n" + ROW.format(2)
    )

    response = client.post(
        "/readings?household=uci-sceaux&utc_offset=%2B01:00",
        content=body,
        headers={"content-type": "text/csv"},
    )

    assert response.status_code == 200
    answer = response.json()
    assert (answer["totals"]["accepted"], answer["totals"]["missing"]) == (2, 1)
    assert [o["index"] for o in answer["outcomes"]] == [2, 4]
    assert answer["outcomes"][0]["timestamp"] == "2007-03-31T23:00:00Z"
    assert len(published(publisher.records)["uci-sceaux"]) == 2


@pytest.mark.parametrize(
    ("offset", "first"),
    [
        ("uci", "2007-03-31T23:00:00Z"),
        ("+01:00", "2007-03-31T23:00:00Z"),  # an unencoded '+' arrives as a space
        ("%2B01:00", "2007-03-31T23:00:00Z"),
        ("Z", "2007-04-01T00:00:00Z"),
        ("-05:30", "2007-04-01T05:30:00Z"),
    ],
)
def test_http_csv_reads_naive_times_with_the_declared_offset(client, offset, first):
    response = client.post(
        f"/readings?household=h1&utc_offset={offset}",
        content=UCI_HEADER + "\r\n" + ROW.format(0),
        headers={"content-type": "text/csv"},
    )

    assert response.status_code == 200
    assert response.json()["outcomes"][0]["timestamp"] == first


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", "naive_timestamp"),
        ("&utc_offset=CET", "bad_utc_offset"),
        ("&utc_offset=%2B15:00", "bad_utc_offset"),
    ],
)
def test_http_csv_without_a_usable_offset_is_refused_once(
    client, publisher, quarantine, query, code
):
    body = UCI_HEADER + "\r\n" + ROW.format(0) + ROW.format(1)

    response = client.post(
        f"/readings?household=h1{query}", content=body, headers={"content-type": "text/csv"}
    )

    assert response.status_code == 400
    answer = response.json()
    assert answer["error"]["code"] == code
    assert "utc_offset" in answer["error"]["reason"]
    assert answer["totals"]["accepted"] == 0
    assert publisher.records == []
    assert [q.original for q in quarantine.items] == [body.encode()]  # the body, once


@pytest.mark.parametrize(
    ("query", "code"), [("", "missing_household"), ("?household=../etc", "bad_household_id")]
)
def test_http_csv_without_usable_household_answers_400(client, quarantine, query, code):
    response = client.post(
        f"/readings{query}", content=UCI_HEADER + "\r\n", headers={"content-type": "text/csv"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert len(quarantine.items) == 1


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/json; charset=latin-1", ""]
)
def test_http_unsupported_media_type_answers_415_and_quarantines(client, quarantine, content_type):
    response = client.post("/readings", content=b"[]", headers={"content-type": content_type})

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert quarantine.items[0].original == b"[]"


def test_http_json_with_utf8_charset_is_accepted(client):
    response = client.post(
        "/readings",
        content=json.dumps([reading(0)]),
        headers={"content-type": "application/json; charset=UTF-8"},
    )

    assert response.status_code == 200


def test_http_too_many_readings_answers_413(deps, quarantine):
    client = TestClient(create_app(replace(deps, limits=IntakeLimits(2))))

    response = post_json(client, [reading(m) for m in range(3)])

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_many_items"
    assert response.json()["totals"]["received"] == 3
    assert json.loads(quarantine.items[0].original) == [reading(m) for m in range(3)]


def test_http_oversized_body_answers_413_and_keeps_it(client, quarantine):
    body = b"[" + b" " * (6 * 1024 * 1024) + b"]"

    response = client.post("/readings", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert quarantine.items[0].original == body


def test_http_body_beyond_quarantine_limit_is_truncated_not_held(deps, quarantine):
    limits = IntakeLimits(max_body_bytes=100, max_quarantined_bytes=1000)
    client = TestClient(create_app(replace(deps, limits=limits)))

    response = client.post("/readings", content=b"x" * 5000, headers={"content-type": "text/csv"})

    assert response.status_code == 413
    assert quarantine.items[0].original == b"x" * 1000
    assert "first 1000 of 5000 bytes" in quarantine.items[0].reason


def test_http_endless_body_is_read_only_up_to_the_limits():
    received = 0

    async def receive() -> dict[str, Any]:  # a client streaming a body that never ends
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b"x" * 500, "more_body": True}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", b"99")]}
    request = Request(scope, receive)

    body, size = asyncio.run(_read_body(request, 1000, stop_after=2000))

    assert body == b"x" * 1000
    assert size == 2500  # what was read, above the declared 99
    assert received == 5  # stopped just past the limit


def test_http_publish_failure_answers_503_and_claims_nothing(deps):
    client = TestClient(create_app(replace(deps, publisher=FailingPublisher())))

    response = post_json(client, [reading(0)])

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "error": {
            "code": "publish_failed",
            "reason": "readings could not be published: stream throttled",
        },
    }


def test_http_quarantine_failure_answers_503_and_publishes_nothing(deps, publisher):
    client = TestClient(create_app(replace(deps, quarantine=MemoryQuarantine(fail=True))))

    response = post_json(client, [reading(0), reading(1, voltage_v=0)])

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "quarantine_unavailable"
    assert publisher.records == []


SCRIPT = "<script>alert(1)</script>"


def test_http_every_answer_says_nosniff(deps):
    client = TestClient(create_app(deps), raise_server_exceptions=False)
    answers = [
        client.get("/health"),
        client.post("/readings", json=[reading()]),
        client.post("/readings", json=[reading(household_id=SCRIPT)]),
        client.post("/readings", content=b"{", headers={"Content-Type": "application/json"}),
        client.post("/readings", content=b"x", headers={"Content-Type": "text/html"}),
        client.get("/nope"),
        client.get("/openapi.json"),
    ]
    failing = TestClient(
        create_app(replace(deps, quarantine=MemoryQuarantine(fail=True))),
        raise_server_exceptions=False,
    )
    answers.append(failing.post("/readings", json=[reading(voltage_v=0)]))

    assert [a.status_code for a in answers] == [200, 200, 400, 400, 415, 404, 200, 503]
    assert all(a.headers["x-content-type-options"] == "nosniff" for a in answers)
    assert all(
        a.headers.get("cache-control") == "no-store" for a in answers if a.status_code >= 400
    )


def test_http_unexpected_error_is_json_500_with_nosniff(deps):
    class Broken:
        def publish(self, records: Any) -> Any:
            raise RuntimeError("boom")

    client = TestClient(
        create_app(replace(deps, publisher=Broken())), raise_server_exceptions=False
    )

    reply = client.post("/readings", json=[reading()])

    assert reply.status_code == 500
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.json()["error"]["code"] == "internal_error"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (json.dumps([reading(household_id=SCRIPT)]), "application/json"),
        (json.dumps([reading(**{SCRIPT: 1})]), "application/json"),
        (json.dumps([reading(timestamp=SCRIPT)]), "application/json"),
        ("x", f"text/{SCRIPT}"),
    ],
)
def test_http_echoed_input_holds_no_markup_and_is_bounded(client, body, content_type):
    reply = client.post("/readings", content=body.encode(), headers={"Content-Type": content_type})

    assert reply.status_code in (400, 415)
    assert not set(b"<>") & set(reply.content)
    assert SCRIPT in reply.text.encode().decode("unicode_escape")  # the JSON still says it
    assert len(reply.content) < 2000


def test_http_conflicting_copies_answer_superseded_and_publish_the_last(client, publisher):
    reply = post_json(
        client, [reading(0, global_active_power_kw=1.0), reading(0, global_active_power_kw=2.0)]
    )

    assert reply.status_code == 200
    answer = reply.json()
    assert [(o["status"], o["code"]) for o in answer["outcomes"]] == [
        ("superseded", "conflict"),
        ("accepted", None),
    ]
    assert answer["totals"]["superseded"] == 1
    assert published(publisher.records)["h1"].columns["global_active_power_kw"].tolist() == [2.0]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"readings": [], "readings": [{"household_id": "h1"}]}', 400, "malformed_json"),
        (
            b'[{"household_id": "victim/../attacker", "household_id": "h1",'
            b' "timestamp": "2007-04-01T00:00:00Z", "global_active_power_kw": 1}]',
            400,
            "malformed_json",
        ),
    ],
)
def test_http_repeated_json_keys_are_refused(client, publisher, quarantine, body, status, code):
    reply = client.post("/readings", content=body, headers={"Content-Type": "application/json"})

    assert reply.status_code == status
    answer = reply.json()
    codes = answer["error"]["code"] if answer["error"] else answer["outcomes"][0]["code"]
    assert codes == code
    assert publisher.records == []
    (item,) = quarantine.items
    # every copy of the repeated key is kept (the envelope: the whole body)
    assert item.original.count(b"household_id") == body.count(b"household_id")


def test_http_10000_bad_items_are_refused_with_one_quarantine_call(client, quarantine):
    body = bad_batch_body(10_000, target_bytes=1024 * 1024)

    reply = client.post("/readings", content=body, headers={"Content-Type": "application/json"})

    assert reply.status_code == 400
    answer = reply.json()
    assert answer["totals"]["rejected"] == 10_000
    assert len(answer["outcomes"]) == 10_000
    assert quarantine.calls == 1  # the adapter stores one call as one object + one message
    assert len(quarantine.items) == 10_000


def test_http_10_mib_body_is_refused_by_size_before_parsing(client, quarantine):
    body = b"[" + b"{" * (10 * 1024 * 1024)  # would be malformed JSON, if it were parsed

    reply = client.post("/readings", content=body, headers={"Content-Type": "application/json"})

    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "payload_too_large"
    (item,) = quarantine.items
    assert item.reason.startswith("payload_too_large")


def test_http_health_answers_ok(client):
    assert client.get("/health").json() == {"status": "ok"}


def test_http_openapi_describes_request_and_response_models(client):
    schema = client.get("/openapi.json").json()

    post = schema["paths"]["/readings"]["post"]
    content = post["requestBody"]["content"]
    assert set(content) == {"application/json", "text/csv"}
    payload_ref = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    components = schema["components"]["schemas"]
    refs = json.dumps(components[payload_ref])
    assert "#/components/schemas/MeterReading" in refs
    assert "#/components/schemas/ReadingsEnvelope" in refs
    assert "global_active_power_kw" in components["MeterReading"]["properties"]
    for status in ("200", "207", "400", "413", "415"):
        response_schema = post["responses"][status]["content"]["application/json"]["schema"]
        assert response_schema["$ref"] == "#/components/schemas/IntakeResponse"
    assert post["responses"]["503"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/UnavailableResponse"
    )
    assert {p["name"] for p in post["parameters"]} == {"household", "utc_offset"}
    assert set(components["IntakeResponse"]["properties"]) == {
        "status",
        "totals",
        "outcomes",
        "error",
    }


# ----------------------------------------------------------------------- Lambda path


def emf_documents(text: str) -> list[dict[str, Any]]:
    documents = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [d for d in documents if "_aws" in d]


def test_http_lambda_apigw_v2_json_event_answers_207(deps, publisher, quarantine, capsys):
    handler = http_lambda.handler.build(deps)

    response = handler(load_event("apigw_http_v2_post_readings_json.json"), lambda_context())

    assert response["statusCode"] == 207
    answer = json.loads(response["body"])
    assert [o["status"] for o in answer["outcomes"]] == [
        "accepted",
        "accepted",
        "rejected",
        "duplicate",
    ]
    assert answer["outcomes"][2]["code"] == "negative_power"
    assert len(published(publisher.records)["uci-sceaux"]) == 2
    assert len(quarantine.items) == 1
    (emf,) = emf_documents(capsys.readouterr().out)
    assert emf["ReadingsAccepted"] == [2.0]
    assert emf["ReadingsRejected_negative_power"] == [1.0]
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "wattstream-test"


def test_http_lambda_apigw_v2_base64_csv_event_answers_200(deps, publisher):
    handler = http_lambda.handler.build(deps)

    response = handler(load_event("apigw_http_v2_post_readings_csv.json"), lambda_context())

    assert response["statusCode"] == 200
    totals = json.loads(response["body"])["totals"]
    assert (totals["accepted"], totals["missing"]) == (2, 1)
    assert len(published(publisher.records)["uci-sceaux"]) == 2


def test_http_lambda_module_handler_builds_from_environment_on_local_stack(
    deploy_stack, clients, aws, monkeypatch
):
    stack = deploy_stack()
    queue_name = stack.outputs["QuarantineQueueUrl"].rsplit("/", 1)[1]
    queue_url = clients("sqs").get_queue_url(QueueName=queue_name)["QueueUrl"]
    for name, value in {
        "READINGS_STREAM_NAME": stack.outputs["ReadingsStreamName"],
        "RAW_BUCKET": stack.outputs["RawBucketName"],
        "ARCHIVE_BUCKET": stack.outputs["ArchiveBucketName"],
        "QUARANTINE_QUEUE_URL": queue_url,
        "AWS_ENDPOINT_URL": aws.endpoint_url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "wattstream-test",
    }.items():
        monkeypatch.setenv(name, value)
    http_lambda.handler.reset()  # deps built for this process's environment, as now set

    try:
        response = http_lambda.handler(
            load_event("apigw_http_v2_post_readings_json.json"), lambda_context()
        )
    finally:
        http_lambda.handler.reset()

    assert response["statusCode"] == 207
    records = stream_records_on(clients, stack.outputs["ReadingsStreamName"])
    assert len(published(records)["uci-sceaux"]) == 2
    listing = clients("s3").list_objects_v2(
        Bucket=stack.outputs["ArchiveBucketName"], Prefix="quarantine/http/"
    )
    assert [o["Key"].rsplit("/", 2)[1] for o in listing["Contents"]] == ["negative_power"]
