"""The Lambda shell skeleton: entry point, deliveries, the readings decoder, the frame rule."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import pkgutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

import services
from shared.batch import ReadingBatch
from shared.codec import encode_batch
from shared.lambda_batch import settle
from shared.settings import AwsSettings, settings_from
from shared.shell import (
    BatchOutcome,
    Delivery,
    LambdaEntry,
    ShellDeps,
    batch_handler,
    decode_readings,
    deliveries,
    metrics_for,
    skip_refused,
)
from tests.conftest import TEMPLATE
from tests.lambda_events import SHARD, kinesis_fixture_event, load_fixture_event
from wattstream.hosting.template import load_template

POISON = "poisoned-by-os-environ"


class FakeContext:
    function_name = "f"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:f"
    aws_request_id = "r1"


@dataclass(frozen=True)
class NamedDeps(ShellDeps):
    name: str


def naming_entry(builds: list[dict[str, str]] | None = None) -> LambdaEntry[NamedDeps]:
    """An entry whose handler answers the ``NAME`` its deps were built from."""

    def build_deps(environment):
        if builds is not None:
            builds.append(dict(environment))
        return NamedDeps(name=environment["NAME"], metrics=metrics_for(environment))

    def make_handler(deps):
        def handle(event, context):
            deps.metrics.add_metric(name="Calls", unit=MetricUnit.Count, value=1)
            return {"name": deps.name}

        return handle

    return LambdaEntry(build_deps, make_handler)


# ------------------------------------------------------------------------ LambdaEntry


def test_lambda_entry_bind_builds_deps_from_each_environment_alone(monkeypatch, capsys):
    monkeypatch.setenv("NAME", POISON)
    entry = naming_entry()

    first = entry.bind({"NAME": "a", "POWERTOOLS_METRICS_NAMESPACE": "ns-a"})
    second = entry.bind({"NAME": "b", "POWERTOOLS_METRICS_NAMESPACE": "ns-b"})

    assert first({}, FakeContext()) == {"name": "a"}
    assert second({}, FakeContext()) == {"name": "b"}
    assert first({}, FakeContext()) == {"name": "a"}
    namespaces = [line for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [('"ns-a"' in n, '"ns-b"' in n) for n in namespaces] == [
        (True, False),
        (False, True),
        (True, False),
    ]  # one metric set per function: each flush holds only its own function's metric


def test_lambda_entry_call_builds_once_from_os_environ_until_reset(monkeypatch):
    builds: list[dict[str, str]] = []
    entry = naming_entry(builds)
    monkeypatch.setenv("NAME", "first")

    assert entry({}, FakeContext()) == {"name": "first"}
    monkeypatch.setenv("NAME", "second")
    assert entry({}, FakeContext()) == {"name": "first"}  # cached for the sandbox
    entry.bind({"NAME": "bound"})  # a bound handler leaves the cached deps alone
    assert entry({}, FakeContext()) == {"name": "first"}
    entry.reset()
    assert entry({}, FakeContext()) == {"name": "second"}
    assert [b["NAME"] for b in builds] == ["first", "bound", "second"]


def test_batch_handler_settles_failed_items_and_emits_the_counters(capsys):
    def process(records, deps):
        outcome = BatchOutcome.counting("Seen", "Zero")
        outcome.counts["Seen"] = len(records)
        outcome.fail([records[1].item_id], "bad")
        return outcome

    entry = LambdaEntry(lambda env: ShellDeps(), batch_handler(process, kinesis=True, message="m"))
    event = kinesis_fixture_event([("h", b"1"), ("h", b"2"), ("h", b"3")], role="t")

    reply = entry.build(ShellDeps(metrics=metrics_for({})))(event, FakeContext())

    second = event["Records"][1]["kinesis"]["sequenceNumber"]
    assert reply == {"batchItemFailures": [{"itemIdentifier": second}]}
    assert reply == settle(event, FakeContext(), {second: "bad"}, kinesis=True)
    (emf,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert (emf["Seen"], emf["Zero"], emf["RecordsFailed"]) == ([3.0], [0.0], [1.0])


# ------------------------------------------------------------- composition roots


def _shell_environment() -> dict[str, str]:
    return {
        "READINGS_STREAM_NAME": "readings-from-mapping",
        "RAW_BUCKET": "raw-from-mapping",
        "ARCHIVE_BUCKET": "archive-from-mapping",
        "MODELS_BUCKET": "models-from-mapping",
        "QUARANTINE_QUEUE_URL": "http://mapping.invalid/queue/quarantine",
        "GATEWAY_TABLE": "gateway-from-mapping",
        "TOKEN_SECRET": "m" * 32,
        "AWS_ENDPOINT_URL": "http://mapping.invalid:4566",
        "AWS_REGION": "eu-west-1",
        "POWERTOOLS_SERVICE_NAME": "service-from-mapping",
        "POWERTOOLS_METRICS_NAMESPACE": "namespace-from-mapping",
    }


@pytest.fixture
def poisoned_environment(monkeypatch):
    """``os.environ`` holding wrong values for every variable a composition root reads."""
    for name in _shell_environment():
        monkeypatch.setenv(name, POISON)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{POISON}.invalid:1")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("STREAM_BUS", "kafka")  # kinesis unless the mapping says otherwise


def _clients(value: Any, depth: int = 3) -> list[Any]:
    """The boto3 clients reachable from a deps object (adapters hold them)."""
    if hasattr(value, "meta") and hasattr(value.meta, "endpoint_url"):
        return [value]
    if depth == 0 or not hasattr(value, "__dict__"):
        return []
    return [c for v in vars(value).values() for c in _clients(v, depth - 1)]


SHELLS = [
    "services.ingest.shells.archive_lambda",
    "services.ingest.shells.batch_lambda",
    "services.ingest.shells.http_lambda",
    "services.monthly.shells.lambda_handler",
    "services.gateway.shells.readings_lambda",
    "services.gateway.shells.forecasts_lambda",
    "services.gateway.shells.results_lambda",
    "services.gateway.shells.api_lambda",
]


@pytest.mark.parametrize("module_name", SHELLS)
def test_composition_root_reads_the_given_environment_not_os_environ(
    module_name, poisoned_environment
):
    entry = importlib.import_module(module_name).handler

    deps = entry.build_deps(_shell_environment())

    clients = _clients(deps)
    assert clients, "the deps hold no boto3 client to check"
    assert {c.meta.endpoint_url for c in clients} == {"http://mapping.invalid:4566"}
    assert {c.meta.region_name for c in clients} == {"eu-west-1"}
    assert POISON not in repr(vars(deps))
    assert deps.logger.service == "service-from-mapping"
    assert deps.metrics.namespace == "namespace-from-mapping"


def test_composition_root_missing_variable_is_not_taken_from_os_environ(poisoned_environment):
    from services.ingest.shells.archive_lambda import handler

    environment = _shell_environment()
    del environment["ARCHIVE_BUCKET"]

    with pytest.raises(ValidationError, match="ARCHIVE_BUCKET"):
        handler.build_deps(environment)


def test_settings_from_reads_json_fields_and_ignores_os_environ(monkeypatch):
    from services.gateway.settings import GatewayApiSettings

    monkeypatch.setenv("GATEWAY_DEAD_LETTER_QUEUES", '{"Poisoned": "x"}')
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    environment = {**_shell_environment(), "GATEWAY_DEAD_LETTER_QUEUES": '{"Dlq": "u"}'}

    assert settings_from(GatewayApiSettings, environment).dead_letter_queues == {"Dlq": "u"}
    assert settings_from(AwsSettings, {}).region == "us-east-1"


def test_aws_settings_client_ignores_the_process_endpoint_url(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{POISON}.invalid:1")

    client = settings_from(AwsSettings, {"AWS_REGION": "eu-west-1"}).client("s3")

    assert POISON not in client.meta.endpoint_url
    assert client.meta.endpoint_url.endswith("amazonaws.com")


# ---------------------------------------------------------------------------- Delivery


def test_delivery_from_kinesis_keeps_bytes_and_coordinates():
    event = kinesis_fixture_event([("h1", b"\x00\x01")], role="t")

    (delivery,) = deliveries(event, kinesis=True)

    record = event["Records"][0]
    assert delivery.data == b"\x00\x01"
    assert delivery.source == "kinesis:readings"
    assert (delivery.stream, delivery.shard, delivery.partition_key) == ("readings", SHARD, "h1")
    assert delivery.item_id == record["kinesis"]["sequenceNumber"]
    assert delivery.arrived_at == dt.datetime.fromtimestamp(1_700_000_000.125, dt.UTC)
    refused = delivery.quarantined("why", dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    assert (refused.original, refused.coordinates) == (b"\x00\x01", delivery.coordinates)


def test_delivery_from_sqs_names_the_message():
    event = load_fixture_event("sqs_s3_object_created.json")

    (delivery,) = deliveries(event, kinesis=False)

    record = event["Records"][0]
    assert delivery.item_id == record["messageId"]
    assert delivery.text == record["body"]
    assert delivery.source == f"sqs:{record['eventSourceARN'].rsplit(':', 1)[-1]}"
    assert delivery.coordinates.stream == record["eventSourceARN"]


# ----------------------------------------------------------------------- readings decoder


def _readings_delivery(household: str, key: str, power: list[float]) -> Delivery:
    stamps = 1_700_000_000_000_000 + np.arange(len(power), dtype=np.int64) * 60_000_000
    batch = ReadingBatch(household, stamps, {"global_active_power_kw": np.array(power)})
    (data,) = encode_batch(batch)
    event = kinesis_fixture_event([(key, data)], role="t")
    return Delivery.from_kinesis(event["Records"][0])


def test_decode_readings_keeps_a_clean_record_whole():
    decoded = decode_readings(_readings_delivery("h1", "h1", [1.0, 2.0]))

    assert decoded.code is None
    assert decoded.reason is None
    assert decoded.batch is not None
    assert len(decoded.batch) == 2


def test_decode_readings_refuses_another_households_partition_key():
    decoded = decode_readings(_readings_delivery("h1", "h2", [1.0]))

    assert (decoded.batch, decoded.code, decoded.household_id) == (
        None,
        "wrong_partition_key",
        "h1",
    )
    assert decoded.reason is not None
    assert decoded.reason.startswith("wrong partition key")


def test_decode_readings_refuses_undecodable_bytes():
    event = kinesis_fixture_event([("h1", b"\x89WSR\x01 not a record")], role="t")

    decoded = decode_readings(Delivery.from_kinesis(event["Records"][0]))

    assert (decoded.batch, decoded.code) == (None, "undecodable")
    assert decoded.reason is not None
    assert decoded.reason.startswith("undecodable record (")


def test_decode_readings_drops_insane_readings_and_keeps_the_rest():
    decoded = decode_readings(_readings_delivery("h1", "h1", [1.0, -5.0, 2.0]))

    assert decoded.code == "insane_readings"
    assert decoded.rejected == 1
    assert decoded.batch is not None
    assert decoded.batch.columns["global_active_power_kw"].tolist() == [1.0, 2.0]
    assert decoded.reason is not None
    assert decoded.reason.startswith("1 of 3 readings refused")


def test_skip_refused_counts_records_and_readings(caplog):
    counts: Counter[str] = Counter()
    logger = Logger(service="shell-test")

    for delivery in (
        _readings_delivery("h1", "h2", [1.0]),
        _readings_delivery("h1", "h1", [1.0, -5.0, -6.0]),
        _readings_delivery("h1", "h1", [1.0]),
    ):
        skip_refused(decode_readings(delivery), logger=logger, counts=counts, consumer="test")

    assert counts == {"RecordsUndecodable": 1, "ReadingsRejected": 2}


# ------------------------------------------------------------------ the frame, once


def _shell_modules() -> list[str]:
    names = []
    for service in Path(services.__file__).parent.iterdir():
        shells = service / "shells"
        if shells.is_dir():
            names += [
                f"services.{service.name}.shells.{m.name}"
                for m in pkgutil.iter_modules([str(shells)])
            ]
    return sorted(names)


FRAME = ("_default_handler", "_utc_now", "_Record", "build_handler", "Delivered")


@pytest.mark.parametrize("module_name", _shell_modules())
def test_shell_module_repeats_no_frame_of_the_skeleton(module_name):
    module = importlib.import_module(module_name)

    assert [name for name in FRAME if name in vars(module)] == []
    handler = vars(module).get("handler")
    assert handler is None or isinstance(handler, LambdaEntry)
    for name, value in vars(module).items():
        if isinstance(value, type) and value.__module__ == module_name:
            if name.endswith("Deps"):
                assert issubclass(value, ShellDeps), name
            if name.endswith("Outcome") and "failed" in getattr(value, "__dataclass_fields__", {}):
                assert issubclass(value, BatchOutcome), name


def test_every_template_handler_is_a_lambda_entry():
    template = load_template(TEMPLATE)
    handlers = [
        resource["Properties"]["Handler"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
        and str(resource["Properties"].get("Handler", "")).startswith("services.")
    ]

    assert len(handlers) >= 8
    for spec in handlers:
        module_name, _, attr = spec.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module_name), attr), LambdaEntry), spec


def test_shell_module_frame_rule_catches_a_copied_frame(tmp_path, monkeypatch):
    """The rule above can fail: a module with its own cached default handler is caught."""
    package = tmp_path / "copied"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "shell.py").write_text(
        "import functools\n"
        "@functools.cache\n"
        "def _default_handler():\n    return lambda event, context: {}\n"
        "def handler(event, context):\n    return _default_handler()(event, context)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(AssertionError):
        test_shell_module_repeats_no_frame_of_the_skeleton("copied.shell")
