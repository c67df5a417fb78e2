"""The three query-store builders on the local runner, against the real template on moto.

Each test publishes real input (UCI April 2007 readings, forecasts, monthly result objects),
drains the template's mapping with the handler built from test dependencies, and then
replays everything again from the start of the stream (a fresh checkpoint file: what an
at-least-once redelivery can do at worst) to prove the store does not change.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from aws_lambda_powertools import Logger, Metrics

from services.gateway.adapters.aws import S3Objects
from services.gateway.adapters.dynamo_store import DynamoGatewayStore
from services.gateway.core.accuracy import accuracy_days, household_accuracy
from services.gateway.core.consumption import DayKey, day_energy_kwh
from services.gateway.shells import forecasts_lambda, readings_lambda, results_lambda
from services.gateway.shells.consumer import ConsumerDeps
from shared.batch import ReadingBatch, us_to_datetime
from shared.publishing import stream_records
from shared.streams.kinesis import KinesisPublisher
from shared.streams.ports import StreamRecord
from shared.uci import iter_uci
from testing.reliability.gateway_world import flat_forecasts, forecast_for, monthly_for
from tests.conftest import APRIL_2007
from tests.services.ingest.fakes import MemoryQuarantine
from wattstream.local.runner import EventSourceRunner

HOUSEHOLD = "uci-sceaux"


@pytest.fixture
def stack(deploy_stack):
    return deploy_stack(parameters={"ReadingsShardCount": "2", "ForecastsShardCount": "1"})


@pytest.fixture
def quarantine():
    return MemoryQuarantine()


@pytest.fixture
def deps(stack, clients, quarantine):
    return ConsumerDeps(
        store=DynamoGatewayStore(stack.outputs["GatewayTableName"], client=clients("dynamodb")),
        quarantine=quarantine,
        logger=Logger(service="gateway-test"),
        metrics=Metrics(namespace="wattstream-test", service="gateway-test"),
        objects=S3Objects(s3=clients("s3")),
    )


def drain(stack, clients, tmp_path, function, handler, name="checkpoints"):
    runner = EventSourceRunner(
        stack,
        clients=clients,
        checkpoint_path=tmp_path / f"{name}.json",
        handlers={function: handler},
        functions={function},
        idle_sleep_s=0.01,
        max_backoff_s=0.01,
    )
    runner.drain(timeout_s=120)
    return runner


def first_days() -> ReadingBatch:
    """Two real days of the UCI house (2,880 minutes, gaps included)."""
    chunk = next(iter(iter_uci(APRIL_2007, household_id=HOUSEHOLD, chunk_rows=2880)))
    return chunk.readings


def table_items(clients, stack):
    """The stored data: without the PIPELINE bookkeeping, nor the accuracy recomputation
    ticket (``seq``, a counter of recomputations that lives on the accuracy item)."""
    scan = clients("dynamodb").scan(TableName=stack.outputs["GatewayTableName"])
    return {
        (i["pk"]["S"], i["sk"]["S"]): {k: v for k, v in i.items() if k != "seq"}
        for i in scan["Items"]
        if i["pk"]["S"] != "PIPELINE"
    }


def test_readings_consumer_builds_days_and_redelivery_changes_nothing(
    stack, clients, deps, tmp_path, quarantine
):
    batch = first_days()
    records = stream_records([batch], readings_per_record=500)
    records.append(StreamRecord(HOUSEHOLD, b"\x89WSR\x01 not a record"))
    KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis")).publish(records)
    handler = readings_lambda.handler.build(deps)

    drain(stack, clients, tmp_path, "GatewayReadingsFunction", handler)
    before = table_items(clients, stack)
    drain(stack, clients, tmp_path, "GatewayReadingsFunction", handler, name="replayed")

    assert table_items(clients, stack) == before  # same items, same versions
    days = {
        key.day: deps.store.days(HOUSEHOLD, [key.day])[key.day]
        for key in {DayKey(HOUSEHOLD, us_to_datetime(int(t)).date()) for t in batch.timestamps_us}
    }
    power = batch.columns["global_active_power_kw"]
    assert sum(day_energy_kwh(d) for d in days.values()) == pytest.approx(
        float(np.nansum(power)) / 60
    )
    assert sum(int((~np.isnan(d)).sum()) for d in days.values()) == len(batch)
    (summary,) = deps.store.households()
    assert summary.last_reading_at == us_to_datetime(int(batch.timestamps_us.max()))
    assert quarantine.items == []  # the archive consumer owns the readings quarantine
    (progress,) = deps.store.progress()
    assert progress.consumer == "readings"
    assert progress.records == 2 * len(records)


def test_readings_consumer_failed_day_fails_only_its_records(stack, clients, tmp_path):
    """A household-day that cannot be written is retried; the other day is applied."""

    class FailingFirstDay:
        def __init__(self, store):
            self.store, self.failures = store, 0

        def __getattr__(self, name):
            return getattr(self.store, name)

        def merge_days(self, updates):
            failed, rest = {}, {}
            for key, update in updates.items():
                if key.day == dt.date(2006, 12, 16) and self.failures < 2:
                    self.failures += 1
                    failed[key] = OSError("throttled")
                else:
                    rest[key] = update
            return failed | self.store.merge_days(rest)

    store = FailingFirstDay(
        DynamoGatewayStore(stack.outputs["GatewayTableName"], client=clients("dynamodb"))
    )
    deps = ConsumerDeps(
        store=store,
        quarantine=MemoryQuarantine(),
        logger=Logger(service="gateway-test"),
        metrics=Metrics(namespace="wattstream-test", service="gateway-test"),
    )
    start = int(dt.datetime(2006, 12, 16, 23, 50, tzinfo=dt.UTC).timestamp() * 1e6)
    stamps = start + np.arange(20, dtype=np.int64) * 60_000_000  # 23:50 to 00:09
    batch = ReadingBatch(HOUSEHOLD, stamps, {"global_active_power_kw": np.full(20, 2.0)})
    publisher = KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis"))
    publisher.publish(stream_records([batch], readings_per_record=10))

    runner = drain(
        stack, clients, tmp_path, "GatewayReadingsFunction", readings_lambda.handler.build(deps)
    )

    assert store.failures == 2
    found = deps.store.days(HOUSEHOLD, [dt.date(2006, 12, 16), dt.date(2006, 12, 17)])
    assert [int((~np.isnan(d)).sum()) for d in found.values()] == [10, 10]
    (stats,) = runner.stats().values()
    assert stats.partial_failures == 2
    assert stats.sent_to_destination == 0


def test_forecasts_consumer_keeps_latest_and_anomalies(stack, clients, deps, tmp_path, quarantine):
    t0 = dt.datetime(2007, 4, 1, tzinfo=dt.UTC)
    newest = forecast_for(HOUSEHOLD, t0 + dt.timedelta(minutes=2), anomaly=True)
    forecasts = [
        forecast_for(HOUSEHOLD, t0),
        newest,
        forecast_for(HOUSEHOLD, t0 + dt.timedelta(minutes=1)),  # late: must not win
        forecast_for("uci-0002", t0, anomaly=True),
    ]
    records = [StreamRecord(f.household_id, f.model_dump_json().encode()) for f in forecasts]
    records.append(StreamRecord(HOUSEHOLD, b'{"household_id": "x"}'))
    KinesisPublisher(stack.outputs["ForecastsStreamName"], clients("kinesis")).publish(records)
    handler = forecasts_lambda.handler.build(deps)

    drain(stack, clients, tmp_path, "GatewayForecastsFunction", handler)
    before = table_items(clients, stack)
    drain(stack, clients, tmp_path, "GatewayForecastsFunction", handler, name="replayed")

    assert table_items(clients, stack) == before
    assert deps.store.latest_forecast(HOUSEHOLD) == newest
    marks = deps.store.anomalies(HOUSEHOLD, t0, t0 + dt.timedelta(hours=1))
    assert [m.timestamp for m in marks] == [newest.issued_at]
    assert len(deps.store.anomalies("uci-0002", t0, t0 + dt.timedelta(hours=1))) == 1
    assert quarantine.items[0].reason.startswith("not a Forecast")
    assert quarantine.items[0].original == b'{"household_id": "x"}'


def test_results_consumer_indexes_monthly_results(stack, clients, deps, tmp_path, quarantine):
    s3 = clients("s3")
    bucket = stack.outputs["ModelsBucketName"]
    result = monthly_for(HOUSEHOLD)
    prefix = f"results/monthly/household={HOUSEHOLD}/month=2007-04"
    document = result.model_dump_json()
    s3.put_object(Bucket=bucket, Key=f"{prefix}/components.png", Body=b"\x89PNG")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/as_of=2007-04-02.json", Body=document)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/broken.json", Body=b'{"month": "2007-04"}')
    handler = results_lambda.handler.build(deps)

    drain(stack, clients, tmp_path, "GatewayResultsFunction", handler)
    # The same object written again: a second event, the same item.
    s3.put_object(Bucket=bucket, Key=f"{prefix}/as_of=2007-04-02.json", Body=document)
    runner = drain(stack, clients, tmp_path, "GatewayResultsFunction", handler)

    stored = deps.store.monthly(HOUSEHOLD, "2007-04")
    assert stored is not None
    assert stored.forecast == result
    assert stored.key == f"{prefix}/as_of=2007-04-02.json"
    assert [item.reason.split(":")[0] for item in quarantine.items] == ["not a MonthlyForecast"]
    assert quarantine.items[0].coordinates.shard_or_partition == f"{prefix}/broken.json"
    (stats,) = runner.stats().values()
    assert (stats.function_errors, stats.partial_failures) == (0, 0)


def test_consumers_join_forecasts_with_actuals_and_redelivery_changes_nothing(
    stack, clients, deps, tmp_path
):
    """Real UCI minutes and a day of forecasts, in separate streams and consumers: the
    accuracy item is what the core computes from the store, and a full redelivery of both
    streams leaves every result item as it was."""
    batch = first_days()
    last = us_to_datetime(int(batch.timestamps_us.max()))
    # Every quarter hour from 18:00 the day before, flat 1.2 kW in [0.4, 2.5].
    first = last.replace(hour=0, minute=0, second=0) - dt.timedelta(hours=6)
    forecasts = flat_forecasts(HOUSEHOLD, first, 96)
    KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis")).publish(
        stream_records([batch], readings_per_record=240)
    )
    KinesisPublisher(stack.outputs["ForecastsStreamName"], clients("kinesis")).publish(
        [StreamRecord(HOUSEHOLD, f.model_dump_json().encode()) for f in forecasts]
    )
    handlers = {
        "GatewayReadingsFunction": readings_lambda.handler.build(deps),
        "GatewayForecastsFunction": forecasts_lambda.handler.build(deps),
    }

    def run(name):
        EventSourceRunner(
            stack,
            clients=clients,
            checkpoint_path=tmp_path / f"{name}.json",
            handlers=handlers,
            functions=set(handlers),
            idle_sleep_s=0.01,
            max_backoff_s=0.01,
        ).drain(timeout_s=120)

    run("first")
    stored = deps.store.accuracy(HOUSEHOLD)
    before = table_items(clients, stack)
    run("replayed")

    assert table_items(clients, stack) == before
    assert stored is not None
    assert stored.window_end == last + dt.timedelta(minutes=1)
    minute_days, target_days = accuracy_days(last)
    expected = household_accuracy(
        HOUSEHOLD,
        deps.store.targets(HOUSEHOLD, target_days),
        deps.store.days(HOUSEHOLD, minute_days),
    )
    assert stored == expected
    metrics = stored.horizons["next"].metrics()
    assert metrics.pairs >= 90  # the day's quarter hours that have their minutes
    assert metrics.naive_pairs > 0
    assert metrics.mase is not None
    assert 0 < metrics.coverage < 1
