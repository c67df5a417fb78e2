"""End to end on the local stack: summaries put in the archive bucket -> S3 events -> the
ArchiveEventsQueue -> the local runner -> MonthlyFunction (built from real S3 adapters)
-> forecast JSON, components PNG and checkpoint in the models bucket."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aws_lambda_powertools import Logger, Metrics

from services.ingest.core.archive import summarize_day
from services.monthly.adapters.s3 import S3ArchiveReader, S3RejectSink, S3ResultStore
from services.monthly.core.debounce import checkpoint_key, result_key
from services.monthly.shells.lambda_handler import MonthlyDeps
from services.monthly.shells.lambda_handler import handler as monthly_entry
from shared.archive_layout import readings_key, summary_key
from shared.archive_parquet import encode_day
from shared.batch import ReadingBatch, datetime_to_us
from shared.monthly_results import MonthlyComponents, components_key
from tests.services.monthly.fakes import daily_kwh
from wattstream.hosting.template import StackDescription
from wattstream.local.runner import EventSourceRunner

START = dt.date(2024, 1, 1)
DAYS = 70
LAST = START + dt.timedelta(days=DAYS - 1)  # 2024-03-10


def day_rows(household: str, day: dt.date, kwh: float) -> ReadingBatch:
    """A day of minute readings whose energy is ``kwh``, with an evening peak."""
    start = datetime_to_us(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC))
    minutes = np.arange(1440)
    shape = np.where((minutes >= 18 * 60) & (minutes < 22 * 60), 4.0, 1.0)
    kw = shape / shape.sum() * kwh * 60
    return ReadingBatch(household, start + minutes * 60_000_000, {"global_active_power_kw": kw})


def put_day(
    stack: StackDescription,
    clients: Any,
    household: str,
    day: dt.date,
    kwh: float,
    *,
    parquet: bool,
) -> None:
    s3, bucket = clients("s3"), stack.outputs["ArchiveBucketName"]
    rows = day_rows(household, day, kwh)
    if parquet:
        s3.put_object(Bucket=bucket, Key=readings_key(household, day), Body=encode_day(rows))
    body = summarize_day(rows, day).model_dump_json().encode()
    s3.put_object(Bucket=bucket, Key=summary_key(household, day), Body=body)


def deps_on(stack: StackDescription, clients: Any) -> MonthlyDeps:
    s3 = clients("s3")
    metrics = Metrics(namespace="wattstream-test")
    metrics.clear_metrics()
    return MonthlyDeps(
        source=S3ArchiveReader(stack.outputs["ArchiveBucketName"], s3=s3),
        results=S3ResultStore(stack.outputs["ModelsBucketName"], s3=s3),
        rejects=S3RejectSink(stack.outputs["ModelsBucketName"], s3=s3),
        archive_bucket=stack.outputs["ArchiveBucketName"],
        clock=lambda: dt.datetime(2024, 3, 11, tzinfo=dt.UTC),
        logger=Logger(service="monthly-test"),
        metrics=metrics,
    )


def drain(stack: StackDescription, clients: Any, tmp_path: Path) -> None:
    runner = EventSourceRunner(
        stack,
        clients=clients,
        checkpoint_path=tmp_path / "checkpoints.json",
        functions={"MonthlyFunction"},
        handlers={"MonthlyFunction": monthly_entry.build(deps_on(stack, clients))},
        idle_sleep_s=0.01,
    )
    runner.drain(timeout_s=240)
    assert runner.errors == []


def models(stack: StackDescription, clients: Any) -> dict[str, tuple[str, Any]]:
    """Key -> (ETag, LastModified) of everything in the models bucket."""
    s3 = clients("s3")
    listing = s3.list_objects_v2(Bucket=stack.outputs["ModelsBucketName"]).get("Contents", [])
    return {o["Key"]: (o["ETag"], o["LastModified"]) for o in listing}


@pytest.fixture
def stack(deploy_stack):
    return deploy_stack()


def test_monthly_function_forecasts_on_summary_events_once_per_household_day(
    stack, clients, tmp_path
):
    kwh = daily_kwh(DAYS)
    for i, value in enumerate(kwh):
        day = START + dt.timedelta(days=i)
        put_day(stack, clients, "h1", day, value, parquet=i >= DAYS - 28)

    drain(stack, clients, tmp_path)

    written = models(stack, clients)
    forecasts = [k for k in written if k.startswith("results/") and k.endswith(".json")]
    assert forecasts == [result_key("h1", LAST)]  # 70 events, one forecast
    s3, bucket = clients("s3"), stack.outputs["ModelsBucketName"]
    forecast = json.loads(s3.get_object(Bucket=bucket, Key=forecasts[0])["Body"].read())
    assert forecast["as_of"] == LAST.isoformat()
    assert forecast["fallback_reason"] is None
    assert forecast["actual_to_date_kwh"] == pytest.approx(sum(kwh[-10:]), abs=1e-3)
    data = s3.get_object(Bucket=bucket, Key=components_key("h1", LAST))["Body"].read()
    assert MonthlyComponents.model_validate_json(data).as_of == LAST  # data, not a PNG
    assert forecast["plot_keys"] == {"components": components_key("h1", LAST)}
    assert checkpoint_key("h1") in written

    # The same summaries again (a replayed archive rewrites nothing new), in reverse
    # order: the events repeat and arrive out of order, the forecasts stay as they are.
    for i in reversed(range(DAYS - 5, DAYS)):
        put_day(stack, clients, "h1", START + dt.timedelta(days=i), kwh[i], parquet=False)
    drain(stack, clients, tmp_path)

    assert models(stack, clients) == written

    # The next day arrives: its own forecast, warm-started from the checkpoint.
    put_day(stack, clients, "h1", LAST + dt.timedelta(days=1), 12.0, parquet=True)
    drain(stack, clients, tmp_path)

    after = models(stack, clients)
    assert sorted(k for k in after if k.endswith(".json") and k.startswith("results/")) == [
        result_key("h1", LAST),
        result_key("h1", LAST + dt.timedelta(days=1)),
    ]
    assert after[result_key("h1", LAST)] == written[result_key("h1", LAST)]
    assert after[checkpoint_key("h1")] != written[checkpoint_key("h1")]
