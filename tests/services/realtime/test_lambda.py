"""The realtime Lambda shell: a checked-in Kinesis event, then the local runner on moto."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aws_lambda_powertools import Logger, Metrics

from services.realtime.adapters.state_store import DynamoStateStore
from services.realtime.backends import LiteRtModel
from services.realtime.core.features import MEASUREMENTS
from services.realtime.core.stream import Delivery, StreamConfig, step
from services.realtime.shells.lambda_handler import (
    RealtimeDeps,
    deps_from_environment,
)
from services.realtime.shells.lambda_handler import handler as realtime_entry
from shared.batch import ReadingBatch
from shared.codec import decode_record, encode_batch
from shared.publishing import stream_records
from shared.schema import Forecast
from shared.streams.kinesis import KinesisPublisher
from tests.lambda_events import (
    kinesis_fixture_event,
    load_fixture_event,
    sequences,
)
from tests.services.realtime.fakes import MemoryPublisher, MemoryStateStore, PersistenceModel
from wattstream.hosting.lambda_model import LambdaContext
from wattstream.hosting.template import StackDescription
from wattstream.local.runner import EventSourceRunner

HALF_HOUR_US = 1800 * 1_000_000
POISON = b"\x89WSR\x01 this is not a record"


# ------------------------------------------------------------------------ the test event


def uci_minutes(april: ReadingBatch, name: str, start: int, count: int) -> ReadingBatch:
    piece = april.slice(start, start + count)
    return ReadingBatch(name, piece.timestamps_us, {m: piece.columns[m] for m in MEASUREMENTS})


def london_days(days: int = 3) -> ReadingBatch:
    """MAC000002-like half hours (energy only) from 2013-01-01, with a daily shape."""
    n = days * 48
    start = 1_356_998_400_000_000  # 2013-01-01T00:00Z
    hours = (np.arange(n) % 48) / 2
    kwh = np.round(0.12 + 0.25 * (np.abs(hours - 19) < 3) + 0.02 * (np.arange(n) % 5 == 0), 3)
    return ReadingBatch(
        "MAC000002",
        start + np.arange(n) * HALF_HOUR_US,
        {"energy_kwh": kwh, "interval_s": np.full(n, 1800.0)},
    )


def build_event(april: ReadingBatch) -> dict[str, Any]:
    """The checked-in event: what Lambda delivers for these records, built with the codec.

    uci-sceaux: five real hours of April 2007 in two records (the first delivered twice)
    and a poison record; MAC000002: three days of an energy-only meter.
    """
    first = encode_batch(uci_minutes(april, "uci-sceaux", 0, 150))[0]
    payloads = [
        ("uci-sceaux", first),
        ("MAC000002", encode_batch(london_days())[0]),
        ("uci-sceaux", POISON),
        ("uci-sceaux", first),  # published twice
        ("uci-sceaux", encode_batch(uci_minutes(april, "uci-sceaux", 150, 150))[0]),
    ]
    return kinesis_fixture_event(payloads, role="realtime")


def load_event() -> dict[str, Any]:
    return load_fixture_event("kinesis_readings_realtime.json")


def context() -> LambdaContext:
    return LambdaContext(
        function_name="realtime",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:realtime",
        memory_limit_in_mb=1024,
        timeout_s=60,
    )


def make_deps(model: Any, store: Any, publisher: Any) -> RealtimeDeps:
    return RealtimeDeps(
        model=model,
        store=store,
        publisher=publisher,
        logger=Logger(service="realtime-test"),
        metrics=Metrics(namespace="wattstream-test", service="realtime-test"),
    )


def emitted_metrics(output: str) -> dict[str, float]:
    """The EMF metrics Powertools printed (one JSON document per flush)."""
    values: dict[str, float] = {}
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            document = json.loads(line)
            for definition in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                (value,) = np.atleast_1d(document[definition["Name"]])
                values[definition["Name"]] = value
    return values


def published(publisher: MemoryPublisher) -> list[Forecast]:
    return [Forecast.model_validate_json(r.data) for r in publisher.records]


# ------------------------------------------------------------------- the checked-in event


def test_realtime_event_fixture_is_built_by_the_codec(april):
    assert load_event() == build_event(april)


def test_realtime_handler_event_publishes_forecasts_and_saves_states(spec, capsys):
    store, publisher = MemoryStateStore(), MemoryPublisher()
    event = load_event()

    reply = realtime_entry.build(make_deps(PersistenceModel(spec), store, publisher))(
        event, context()
    )

    assert reply == {"batchItemFailures": []}
    forecasts = published(publisher)
    by_household = Counter(f.household_id for f in forecasts)
    assert by_household["uci-sceaux"] == 300 // 15 - spec.input_steps  # 20 bins, 8 warming
    assert by_household["MAC000002"] > 0
    assert all(f.fallback_reason for f in forecasts if f.household_id == "MAC000002")
    assert all(f.fallback_reason is None for f in forecasts if f.household_id == "uci-sceaux")
    assert all(
        r.partition_key == f.household_id for r, f in zip(publisher.records, forecasts, strict=True)
    )
    seq = sequences(event)
    assert store.state("uci-sceaux").position == int(seq[4])
    assert store.state("MAC000002").position == int(seq[1])
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["RecordsUndecodable"] == 1
    assert metrics["DuplicateRecords"] == 0  # published twice: a new record, same readings
    assert metrics["DuplicateReadings"] == 150
    assert metrics["ForecastsPublished"] == len(forecasts)
    assert metrics["RecordsFailed"] == 0


def test_realtime_handler_forecasts_in_time_order_per_household(spec):
    publisher = MemoryPublisher()
    realtime_entry.build(make_deps(PersistenceModel(spec), MemoryStateStore(), publisher))(
        load_event(), context()
    )

    for household in ("uci-sceaux", "MAC000002"):
        issued = [f.issued_at for f in published(publisher) if f.household_id == household]
        assert issued == sorted(issued)
        assert len(set(issued)) == len(issued)


def test_realtime_handler_batches_the_model_call_across_households(spec):
    event = load_event()
    event["Records"][1]["kinesis"]["partitionKey"] = "uci-copy"
    copy = uci_minutes(
        ReadingBatch.concat(
            [decode_record(base64.b64decode(event["Records"][0]["kinesis"]["data"]))]
        ),
        "uci-copy",
        0,
        150,
    )
    event["Records"][1]["kinesis"]["data"] = base64.b64encode(encode_batch(copy)[0]).decode()
    model = PersistenceModel(spec)

    realtime_entry.build(make_deps(model, MemoryStateStore(), MemoryPublisher()))(event, context())

    assert len(model.calls) == 1
    assert model.calls[0] == (300 // 15 - spec.input_steps) + (150 // 15 - spec.input_steps)


def test_realtime_handler_redelivered_event_publishes_nothing(spec):
    store, publisher = MemoryStateStore(), MemoryPublisher()
    handler = realtime_entry.build(make_deps(PersistenceModel(spec), store, publisher))
    handler(load_event(), context())
    count, writes = len(publisher.records), len(store.writes)

    reply = handler(load_event(), context())

    assert reply == {"batchItemFailures": []}
    assert len(publisher.records) == count
    assert len(store.writes) == writes


def test_realtime_handler_failed_state_write_fails_only_that_household(spec):
    event = load_event()
    clean_store, clean = MemoryStateStore(), MemoryPublisher()
    realtime_entry.build(make_deps(PersistenceModel(spec), clean_store, clean))(event, context())
    failures = iter([True])
    store = MemoryStateStore(fail_save=lambda h: h == "MAC000002" and next(failures, False))
    publisher = MemoryPublisher()
    handler = realtime_entry.build(make_deps(PersistenceModel(spec), store, publisher))

    reply = handler(event, context())
    seq = sequences(event)
    assert reply == {"batchItemFailures": [{"itemIdentifier": seq[1]}]}
    retry = {
        "Records": event["Records"][seq.index(reply["batchItemFailures"][0]["itemIdentifier"]) :]
    }
    assert handler(retry, context()) == {"batchItemFailures": []}

    # MAC000002's forecasts went out twice, identical; uci-sceaux's once (already saved)
    assert sorted(r.data for r in publisher.records) == sorted(
        [r.data for r in clean.records]
        + [r.data for r in clean.records if r.partition_key == "MAC000002"]
    )
    assert store.blobs == clean_store.blobs


def test_realtime_handler_publish_failure_retries_households_with_forecasts(spec):
    event = load_event()
    store, publisher = MemoryStateStore(), MemoryPublisher(fail=1)
    handler = realtime_entry.build(make_deps(PersistenceModel(spec), store, publisher))

    reply = handler(event, context())

    seq = sequences(event)
    failed = [f["itemIdentifier"] for f in reply["batchItemFailures"]]
    assert failed == [seq[0], seq[1], seq[3], seq[4]]  # all but the poison record
    assert store.blobs == {}
    assert handler(event, context()) == {"batchItemFailures": []}
    assert publisher.records


def test_realtime_handler_model_failure_fails_only_households_that_need_it(spec):
    event = load_event()
    store, publisher = MemoryStateStore(), MemoryPublisher()

    reply = realtime_entry.build(make_deps(PersistenceModel(spec, fail=True), store, publisher))(
        event, context()
    )

    seq = sequences(event)
    assert [f["itemIdentifier"] for f in reply["batchItemFailures"]] == [seq[0], seq[3], seq[4]]
    assert {f.household_id for f in published(publisher)} == {"MAC000002"}
    assert list(store.blobs) == ["MAC000002"]


def test_realtime_handler_state_table_down_fails_every_decoded_record(spec):
    event = load_event()
    reply = realtime_entry.build(
        make_deps(PersistenceModel(spec), MemoryStateStore(fail_load=True), MemoryPublisher())
    )(event, context())

    seq = sequences(event)
    assert [f["itemIdentifier"] for f in reply["batchItemFailures"]] == [
        seq[i] for i in (0, 1, 3, 4)
    ]


def test_realtime_handler_record_under_another_households_key_is_skipped(spec, caplog):
    event = load_event()
    event["Records"] = event["Records"][:1]
    event["Records"][0]["kinesis"]["partitionKey"] = "MAC000002"
    publisher = MemoryPublisher()

    reply = realtime_entry.build(make_deps(PersistenceModel(spec), MemoryStateStore(), publisher))(
        event, context()
    )

    assert reply == {"batchItemFailures": []}
    assert publisher.records == []
    assert "another household's partition key" in caplog.text


# ------------------------------------------------------------------------------ the runner


def runner_for(
    stack: StackDescription, clients: Any, path: Path, handler: Any
) -> EventSourceRunner:
    return EventSourceRunner(
        stack,
        clients=clients,
        checkpoint_path=path,
        handlers={"RealtimeFunction": handler},
        functions={"RealtimeFunction"},
        idle_sleep_s=0.01,
        max_backoff_s=0.01,
    )


def stack_deps(
    stack: StackDescription, clients: Any, model: Any, store: Any = None
) -> RealtimeDeps:
    return make_deps(
        model,
        store or DynamoStateStore(stack.outputs["RealtimeStateTableName"], clients("dynamodb")),
        KinesisPublisher(stack.outputs["ForecastsStreamName"], clients("kinesis")),
    )


def read_stream(clients: Any, stream: str) -> list[tuple[str, bytes]]:
    """Every record of a stream, shard by shard, as (partition key, data)."""
    kinesis = clients("kinesis")
    out: list[tuple[str, bytes]] = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            out.extend((r["PartitionKey"], r["Data"]) for r in response["Records"])
            if not response["Records"]:
                break
            iterator = response.get("NextShardIterator")
    return out


def two_households(april: ReadingBatch, days: int) -> list[ReadingBatch]:
    """uci-sceaux's first days, and the same house two days later as uci-0002."""
    minutes = days * 1440
    return [
        uci_minutes(april, "uci-sceaux", 0, minutes),
        uci_minutes(april, "uci-0002", 2880, minutes),
    ]


def reference(
    model: Any, batches: list[ReadingBatch], per_record: int
) -> dict[tuple[str, str], Forecast]:
    """The pure core over the same records, household by household (no Lambda, no AWS)."""
    config = StreamConfig(model.spec)
    states: dict[str, Any] = {}
    out: dict[tuple[str, str], Forecast] = {}
    for batch in batches:
        for position, record in enumerate(stream_records([batch], readings_per_record=per_record)):
            result = step(
                states, [Delivery(decode_record(record.data), position + 1)], model, config
            )
            states.update(result.states)
            for forecast in result.to_forecasts():
                out[(forecast.household_id, forecast.issued_at.isoformat())] = forecast
    return out


def by_identity(records: list[tuple[str, bytes]]) -> dict[tuple[str, str], list[bytes]]:
    found: dict[tuple[str, str], list[bytes]] = {}
    for key, data in records:
        forecast = Forecast.model_validate_json(data)
        assert forecast.household_id == key
        found.setdefault((key, forecast.issued_at.isoformat()), []).append(data)
    return found


def assert_same_forecasts(got: dict[tuple[str, str], list[bytes]], expected: dict) -> None:
    assert got.keys() == expected.keys()
    for identity, documents in got.items():
        forecast = Forecast.model_validate_json(documents[0])
        want = expected[identity]
        assert forecast.model_version == want.model_version
        np.testing.assert_allclose(
            [[p.lower_kw, p.value_kw, p.upper_kw] for p in forecast.points],
            [[p.lower_kw, p.value_kw, p.upper_kw] for p in want.points],
            atol=1e-6,
        )


PER_RECORD = 60  # one hour of minutes per record: steps complete record by record


def test_realtime_lambda_local_runner_forecasts_once_across_restarts(
    deploy_stack, clients, tmp_path, tiny_bundle, april
):
    stack = deploy_stack()
    model = LiteRtModel.from_bundle(tiny_bundle)
    batches = two_households(april, days=2)
    KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis")).publish(
        stream_records(batches, readings_per_record=PER_RECORD)
    )
    handler = realtime_entry.build(stack_deps(stack, clients, model))
    runner = runner_for(stack, clients, tmp_path / "first.json", handler)

    runner.drain(timeout_s=240)

    forecasts = by_identity(read_stream(clients, stack.outputs["ForecastsStreamName"]))
    expected = reference(model, batches, PER_RECORD)
    assert len(expected) == 2 * (2 * 96 - spec_steps(model))
    assert_same_forecasts(forecasts, expected)
    assert all(len(docs) == 1 for docs in forecasts.values())
    stats = runner.stats()["RealtimeFunctionReadings"]
    assert (stats.function_errors, stats.sent_to_destination) == (0, 0)

    # WHEN a restart lost the checkpoints: every record is delivered again
    runner_for(stack, clients, tmp_path / "lost.json", handler).drain(timeout_s=240)

    # THEN the stored states recognise every record: nothing is forecast twice
    again = by_identity(read_stream(clients, stack.outputs["ForecastsStreamName"]))
    assert {k: len(v) for k, v in again.items()} == {k: 1 for k in expected}


def spec_steps(model: Any) -> int:
    return model.spec.input_steps


class FlakyStore:
    """Wraps a store: the first save of each household in ``faults`` fails once."""

    def __init__(self, store: Any, faults: set[str]) -> None:
        self.store = store
        self.faults = set(faults)

    def load(self, household_ids: Any) -> Any:
        return self.store.load(household_ids)

    def save(self, states: Any) -> Any:
        failing = [s for s in states if s.household_id in self.faults]
        self.faults -= {s.household_id for s in failing}
        report = self.store.save([s for s in states if s not in failing])
        report.failed.update({s.household_id: "simulated throttling" for s in failing})
        return report


def test_realtime_lambda_failed_state_write_is_retried_to_the_same_forecasts(
    deploy_stack, clients, tmp_path, tiny_bundle, april
):
    stack = deploy_stack(parameters={"ReadingsShardCount": "1"})
    model = LiteRtModel.from_bundle(tiny_bundle)
    batches = two_households(april, days=1)
    KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis")).publish(
        stream_records(batches, readings_per_record=PER_RECORD)
    )
    table = stack.outputs["RealtimeStateTableName"]
    store = FlakyStore(DynamoStateStore(table, clients("dynamodb")), {"uci-0002"})
    runner = runner_for(
        stack,
        clients,
        tmp_path / "c.json",
        realtime_entry.build(stack_deps(stack, clients, model, store)),
    )

    runner.drain(timeout_s=240)

    assert store.faults == set()  # the fault happened
    assert runner.stats()["RealtimeFunctionReadings"].partial_failures >= 1
    forecasts = by_identity(read_stream(clients, stack.outputs["ForecastsStreamName"]))
    assert_same_forecasts(forecasts, reference(model, batches, PER_RECORD))
    # republished forecasts are byte-identical: consumers upsert them once
    assert all(len(set(docs)) == 1 for docs in forecasts.values())
    assert any(len(docs) == 2 for docs in forecasts.values())
    states = DynamoStateStore(table, clients("dynamodb")).load(["uci-sceaux", "uci-0002"]).states
    assert {s.last_ts_us for s in states.values()} == {int(b.timestamps_us[-1]) for b in batches}


def test_realtime_lambda_composition_root_wires_the_stack(
    deploy_stack, clients, aws, monkeypatch, tiny_bundle, april
):
    stack = deploy_stack()
    environment = {
        "STATE_TABLE": stack.outputs["RealtimeStateTableName"],
        "FORECASTS_STREAM_NAME": stack.outputs["ForecastsStreamName"],
        "MODEL_BACKEND": "litert",
        "MODEL_BUNDLE": str(tiny_bundle),
        "AWS_ENDPOINT_URL": aws.endpoint_url,
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "realtime",
        "POWERTOOLS_METRICS_NAMESPACE": "wattstream-test",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    reply = realtime_entry.build(deps_from_environment())(load_event(), context())

    assert reply == {"batchItemFailures": []}
    forecasts = by_identity(read_stream(clients, stack.outputs["ForecastsStreamName"]))
    assert {h for h, _ in forecasts} == {"uci-sceaux", "MAC000002"}
    stored = DynamoStateStore(environment["STATE_TABLE"], clients("dynamodb")).load(["uci-sceaux"])
    assert stored.states["uci-sceaux"].position == int(sequences(load_event())[4])


def test_realtime_lambda_composition_root_downloads_the_model_version(
    deploy_stack, clients, aws, monkeypatch, tiny_bundle
):
    from services.realtime.model.bundle import upload_bundle

    stack = deploy_stack()
    bucket = stack.outputs["ModelsBucketName"]
    upload_bundle(tiny_bundle, bucket=bucket, s3=clients("s3"))
    environment = {
        "STATE_TABLE": stack.outputs["RealtimeStateTableName"],
        "FORECASTS_STREAM_NAME": stack.outputs["ForecastsStreamName"],
        "MODELS_BUCKET": bucket,
        "MODEL_VERSION": "latest",
        "AWS_ENDPOINT_URL": aws.endpoint_url,
        "AWS_REGION": "us-east-1",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MODEL_BUNDLE", raising=False)

    deps = deps_from_environment()

    assert deps.model.spec.version == "tiny-lstm-test-1"
    assert isinstance(deps.model, LiteRtModel)


def test_realtime_settings_need_an_endpoint_for_sagemaker(monkeypatch):
    from pydantic import ValidationError

    from services.realtime.settings import RealtimeSettings

    monkeypatch.setenv("STATE_TABLE", "t")
    monkeypatch.setenv("FORECASTS_STREAM_NAME", "f")
    monkeypatch.setenv("MODEL_BACKEND", "sagemaker")
    monkeypatch.setenv("SAGEMAKER_ENDPOINT_NAME", "")
    with pytest.raises(ValidationError, match="SAGEMAKER_ENDPOINT_NAME"):
        RealtimeSettings()  # type: ignore[call-arg]
