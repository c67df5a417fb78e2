"""Throttling: 30 % of PutRecords entries refused, injected under the real publisher."""

from __future__ import annotations

import json

import numpy as np
from aws_lambda_powertools import Metrics
from fastapi.testclient import TestClient

from services.ingest.shells.http_app import IngestHttpDeps, create_app
from shared.codec import decode_record
from shared.streams.kinesis import KinesisPublisher
from testing.reliability.faults import ThrottlingKinesis
from testing.reliability.observe import emf_metrics, read_stream
from testing.reliability.scenarios import real_readings, throttling
from tests.services.ingest.fakes import MemoryQuarantine


def test_batch_ingest_throttled_loses_nothing_and_reports_retries(deploy_stack, clients, tmp_path):
    stack = deploy_stack(parameters={"RawEventsVisibilityTimeout": "1"})

    result = throttling(
        stack, clients, tmp_path, households=2, days=2, fraction=0.3, seed=3, readings_per_record=20
    )

    row = result.row()
    assert result.faults_injected > 50  # the fault really happened, at about 30 %
    assert 0.2 < result.faults_injected / row["entries_sent"] < 0.4
    assert result.lost == 0
    assert result.duplicated == 0
    assert row["max_sends_per_entry"] <= row["max_attempts"]  # retries bounded by the policy
    # the shell's EMF metrics show every throttled entry and its retry
    assert row["metric_throttled_entries"] == result.faults_injected
    assert row["metric_retried_entries"] == result.faults_injected
    assert row["metric_publish_requests"] == row["put_records_requests"]
    assert row["uploads_failed"] == 0


def test_ingest_http_throttled_publishes_everything_and_emits_retry_metrics(deploy_stack, clients):
    stack = deploy_stack()
    injector = ThrottlingKinesis(clients("kinesis"), fraction=0.3, seed=5)
    metrics = Metrics(namespace="wattstream-test", service="ingest-http")
    metrics.clear_metrics()
    deps = IngestHttpDeps(
        publisher=KinesisPublisher(
            stack.outputs["ReadingsStreamName"], injector, sleep=lambda s: None
        ),
        quarantine=MemoryQuarantine(),
        readings_per_record=10,
        metrics=metrics,
    )
    client = TestClient(create_app(deps))
    (batch,) = real_readings(1, 1)
    readings = [r.model_dump(mode="json", exclude_none=True) for r in batch.to_readings()]

    reply = client.post("/readings", json=readings)

    assert reply.status_code == 200
    emf = emf_metrics([json.dumps(metrics.serialize_metric_set())])
    assert injector.throttled > 20
    assert emf["PublishThrottledEntries"] == injector.throttled
    assert emf["PublishRetriedEntries"] == injector.throttled
    assert emf["PublishRequests"] == injector.requests
    on_stream = [
        decode_record(data)
        for _, data in read_stream(clients("kinesis"), deps.publisher.stream_name)
    ]
    stamps = np.sort(np.concatenate([b.timestamps_us for b in on_stream]))
    np.testing.assert_array_equal(stamps, batch.timestamps_us)  # every reading once
