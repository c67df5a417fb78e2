"""KCL consumers bound to a deployed stack, their properties, and one real consumer run.

The end-to-end test starts ``python -m wattstream.kcl run ArchiveFunction`` as the
MultiLangDaemon would, against the local stack, and feeds it real aggregated records: the
archive's own handler (built by its own composition root from the function's environment)
writes the Parquet archive, so the KCL consumer runs the same core as the Lambda.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

from shared.publishing import stream_records
from shared.schema import Quarantined
from shared.uci import iter_uci
from testing.kcl_daemon_standin import in_subprocess, record
from tests.conftest import APRIL_2007, ROOT, TEMPLATE
from wattstream.hosting.kcl.binding import from_cloudformation, from_local_stack, kinesis_consumers
from wattstream.hosting.kcl.host import PROPERTIES_DIR, properties_file, render_properties
from wattstream.hosting.template import StackError, load_template


def _properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


def _kinesis_event(template: dict, function: str) -> dict:
    events = template["Resources"][function]["Properties"]["Events"].values()
    (event,) = [e for e in events if e["Type"] == "Kinesis"]
    return event["Properties"]


def test_kinesis_consumers_are_the_template_stream_functions():
    consumers = kinesis_consumers(load_template(TEMPLATE))

    assert consumers == {
        "ArchiveFunction": "ReadingsStream",
        "RealtimeFunction": "ReadingsStream",
        "GatewayReadingsFunction": "ReadingsStream",
        "GatewayForecastsFunction": "ForecastsStream",
    }


def test_properties_one_file_per_consumer_matching_its_mapping():
    template = load_template(TEMPLATE)
    consumers = kinesis_consumers(template)

    assert {properties_file(f) for f in consumers} == set(PROPERTIES_DIR.glob("*.properties"))
    for function in consumers:
        props = _properties(properties_file(function))
        mapping = _kinesis_event(template, function)
        assert (
            props["executableName"] == f"wattstream kcl run {function} --stack-name ${{stackName}}"
        )
        assert props["initialPositionInStream"] == mapping["StartingPosition"] == "TRIM_HORIZON"
        assert int(props["maxRecords"]) == mapping["BatchSize"]
        assert props["streamArn"] == "${streamArn}"
        assert props["regionName"] == "${regionName}"
        assert props["applicationName"].startswith("${stackName}-kcl-")
    names = [_properties(properties_file(f))["applicationName"] for f in consumers]
    assert len(set(names)) == len(names)  # one lease table per consumer


def test_properties_file_name_of_function():
    assert properties_file("GatewayReadingsFunction").name == "gateway-readings.properties"
    assert properties_file("ArchiveFunction").name == "archive.properties"


def test_binding_from_local_stack_has_the_deployed_mapping(deploy_stack):
    stack = deploy_stack()

    binding = from_local_stack(stack, "ArchiveFunction")

    assert binding.function.handler == "services.ingest.shells.archive_lambda.handler"
    assert binding.function.environment["ARCHIVE_BUCKET"] == stack.outputs["ArchiveBucketName"]
    assert binding.stream_name == stack.outputs["ReadingsStreamName"]
    assert binding.destination_arn is not None
    assert binding.destination_arn.endswith(stack.outputs["ReadingsFailureQueueUrl"].split("/")[-1])
    assert binding.mapping.properties["MaximumRetryAttempts"] == 5
    with pytest.raises(StackError, match="0 Kinesis mappings"):
        from_local_stack(stack, "IngestBatchFunction")


def test_binding_from_cloudformation_reads_function_and_mapping(deploy_stack, clients):
    stack = deploy_stack()
    local = from_local_stack(stack, "GatewayForecastsFunction")
    properties = {k: v for k, v in local.mapping.properties.items() if k != "FunctionName"}
    # moto keeps the template's mappings out (the local runner plays Lambda's pollers), so
    # create this one as AWS would, disabled: the KCL worker replaces it.
    clients("lambda").create_event_source_mapping(
        FunctionName=local.function.arn, Enabled=False, **properties
    )

    binding = from_cloudformation(stack.stack_name, "GatewayForecastsFunction", clients)

    assert binding.function.handler == local.function.handler
    assert binding.function.environment == local.function.environment
    assert binding.stream_arn == local.stream_arn
    assert binding.destination_arn == local.destination_arn
    assert binding.mapping.properties["BisectBatchOnFunctionError"] is True


def test_render_properties_fills_the_stack_values(deploy_stack):
    stack = deploy_stack()
    binding = from_local_stack(stack, "RealtimeFunction")

    rendered = render_properties(binding, stack.stack_name)

    assert "${" not in rendered
    props = {
        k: v
        for k, v in (
            line.split(" = ", 1)
            for line in rendered.splitlines()
            if " = " in line and not line.startswith("#")
        )
    }
    assert props["streamName"] == stack.outputs["ReadingsStreamName"]
    assert props["streamArn"] == binding.stream_arn
    assert props["regionName"] == "us-east-1"
    assert props["applicationName"] == f"{stack.stack_name}-kcl-realtime"
    assert props["executableName"].endswith(f"--stack-name {stack.stack_name}")


def test_kcl_run_archive_consumer_runs_the_lambda_core(deploy_stack, clients, tmp_path):
    pytest.importorskip("amazon_kclpy", reason="the kcl extra: deploy/kcl/install_kclpy.py")
    stack = deploy_stack()
    stack.save(tmp_path / "stack.json")
    batch = next(iter(iter_uci(APRIL_2007))).readings.slice(0, 2 * 1440)
    published = stream_records([batch], readings_per_record=720)
    sequences = [f"4959033827149025660855969253836157109592157598913658{i:04d}" for i in range(6)]
    payloads = [*published, None]  # None: a poison record
    records = [
        record(
            p.data if p else b"\x89WSR\x01 not a record",
            s,
            key=p.partition_key if p else batch.household_id,
            arrived_ms=int(time.time() * 1000),  # fresh: within the mapping's maximum age
        )
        for p, s in zip(payloads, sequences, strict=False)
    ]
    env = {**os.environ, "WATTSTREAM_STATE_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("AWS_ENDPOINT_URL", None)
    argv = [sys.executable, "-m", "wattstream.kcl", "run", "ArchiveFunction"]

    with in_subprocess(argv, env=env, cwd=str(ROOT)) as (daemon, process, stderr):
        daemon.initialize("shardId-000000000000")
        daemon.process_records(records)
        daemon.shutdown_requested()

    assert process.returncode == 0, "".join(stderr)
    assert daemon.checkpoints == [(sequences[len(records) - 1], 0), (None, None)]
    s3, bucket = clients("s3"), stack.outputs["ArchiveBucketName"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys, "".join(stderr)
    days = {re.sub(r".*date=([0-9-]+).*", r"\1", k) for k in keys if k.endswith(".parquet")}
    assert len(days) >= 2
    assert all(f"household={batch.household_id}" in k for k in keys if k.startswith("readings/"))
    (quarantined,) = [k for k in keys if k.startswith("quarantine/")]
    item = Quarantined.model_validate_json(
        s3.get_object(Bucket=bucket, Key=quarantined)["Body"].read()
    )
    assert item.coordinates is not None
    assert item.coordinates.sequence_or_offset == sequences[len(records) - 1]
    # The handler's Powertools logs went to stderr, never into the protocol on stdout.
    assert any('"archived batch"' in line for line in stderr)


def test_render_properties_local_adds_endpoints_and_binds_the_processor_locally(deploy_stack):
    stack = deploy_stack()
    binding = from_local_stack(stack, "ArchiveFunction")

    aws = render_properties(binding, stack.stack_name)
    local = render_properties(
        binding, stack.stack_name, local_endpoints=("http://k:1", "http://d:2")
    )

    assert "Endpoint" not in aws
    assert "metricsLevel" not in aws
    props = dict(
        line.split(" = ", 1) for line in local.splitlines() if " = " in line and line[0] != "#"
    )
    assert props["kinesisEndpoint"] == "http://k:1"
    assert props["dynamoDBEndpoint"] == "http://d:2"
    assert props["metricsLevel"] == "NONE"
    assert props["retrievalMode"] == "POLLING"
    assert props["executableName"] == "wattstream kcl run ArchiveFunction"  # the local stack
