"""The S3 adapters against moto over HTTP, on buckets from the real template.

The archive objects are written with the encoder and key functions the ingest archive
writes with (:mod:`shared.archive_parquet`, :mod:`shared.archive_layout`): this is the
contract test that the monthly service reads what the archive writes.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from services.ingest.core.archive import summarize_day
from services.monthly.adapters.local import LocalResultStore
from services.monthly.adapters.s3 import (
    FINGERPRINT_METADATA,
    S3ArchiveReader,
    S3RejectSink,
    S3ResultStore,
    reject_key,
)
from services.monthly.core.debounce import result_key
from services.monthly.core.forecast import forecast_month
from services.monthly.core.plot import components_document
from services.monthly.core.ports import ForecastConflict
from shared.archive_layout import readings_key, summary_key
from shared.archive_parquet import encode_day
from shared.batch import ReadingBatch, datetime_to_us
from shared.monthly_results import MonthlyComponents, components_key
from shared.schema import Quarantined
from tests.services.monthly.fakes import daily_kwh, series_of

DAY = dt.date(2024, 5, 2)


def minute_readings(household: str, day: dt.date, *, evening_kw: float = 3.0) -> ReadingBatch:
    """One day of minute power readings with an evening peak (18:00-21:59 UTC)."""
    start = datetime_to_us(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC))
    minutes = np.arange(1440)
    kw = np.where((minutes >= 18 * 60) & (minutes < 22 * 60), evening_kw, 0.5)
    return ReadingBatch(
        household, start + minutes * 60_000_000, {"global_active_power_kw": kw.astype(float)}
    )


@pytest.fixture
def stack(deploy_stack):
    return deploy_stack()


def test_archive_reader_lists_reads_summaries_and_hourly_power(stack, clients):
    s3, bucket = clients("s3"), stack.outputs["ArchiveBucketName"]
    household = "uci:a"  # ':' is escaped in the archive's keys
    for day in (DAY, DAY + dt.timedelta(days=1)):
        rows = minute_readings(household, day)
        s3.put_object(Bucket=bucket, Key=readings_key(household, day), Body=encode_day(rows))
        body = summarize_day(rows, day).model_dump_json().encode()
        s3.put_object(Bucket=bucket, Key=summary_key(household, day), Body=body)
    reader = S3ArchiveReader(bucket, s3=s3)

    listing = reader.list_summaries(household)
    body, etag = reader.get_summary(household, DAY) or (b"", "")
    hourly = reader.hourly(household, [DAY, DAY + dt.timedelta(days=1), DAY - dt.timedelta(days=3)])

    assert sorted(listing) == [DAY, DAY + dt.timedelta(days=1)]
    assert listing[DAY] == etag
    assert b'"coverage":1.0' in body
    assert reader.get_summary(household, DAY - dt.timedelta(days=1)) is None
    assert hourly is not None
    assert len(hourly) == 48
    assert hourly.kw[:24].tolist() == [0.5] * 18 + [3.0] * 4 + [0.5] * 2


def test_result_store_keeps_the_fingerprint_in_metadata(stack, clients):
    s3, bucket = clients("s3"), stack.outputs["ModelsBucketName"]
    store = S3ResultStore(bucket, s3=s3)
    result = forecast_month(series_of(daily_kwh(120)), dt.date(2024, 4, 29))

    assert store.stored_fingerprint("h1", dt.date(2024, 4, 29)) is None
    key = store.put_forecast(result.forecast, "abc123")
    store.put_checkpoint("h1", result.checkpoint or "")
    store.put_cache("h1", b"{}")

    head = s3.head_object(Bucket=bucket, Key=key)
    assert key == result_key("h1", dt.date(2024, 4, 29))
    assert head["Metadata"][FINGERPRINT_METADATA] == "abc123"
    assert store.stored_fingerprint("h1", dt.date(2024, 4, 29)) == "abc123"
    assert store.get_checkpoint("h1") == result.checkpoint
    assert store.get_cache("h1") == b"{}"
    assert store.get_checkpoint("nobody") is None


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_result_store_conditional_forecast_write_refuses_what_changed_meanwhile(
    kind, stack, clients, tmp_path
):
    s3, bucket = clients("s3"), stack.outputs["ModelsBucketName"]
    store = S3ResultStore(bucket, s3=s3) if kind == "s3" else LocalResultStore(tmp_path)
    forecast = forecast_month(series_of(daily_kwh(120)), dt.date(2024, 4, 29)).forecast

    store.put_forecast(forecast, "first", expected=None)
    with pytest.raises(ForecastConflict):
        store.put_forecast(forecast, "second", expected=None)  # one exists now
    with pytest.raises(ForecastConflict):
        store.put_forecast(forecast, "second", expected="something else")
    store.put_forecast(forecast, "second", expected="first")
    store.put_forecast(forecast, "third")  # unconditional

    assert store.stored_fingerprint("h1", dt.date(2024, 4, 29)) == "third"


def test_result_store_conditional_write_is_the_servers_if_none_match(stack, clients):
    # The check is S3's, not a read before the write: a forecast written between a
    # caller's read and its write makes the write fail.
    s3, bucket = clients("s3"), stack.outputs["ModelsBucketName"]
    store = S3ResultStore(bucket, s3=s3)
    forecast = forecast_month(series_of(daily_kwh(120)), dt.date(2024, 4, 29)).forecast
    assert store.stored_fingerprint("h1", dt.date(2024, 4, 29)) is None
    S3ResultStore(bucket, s3=s3).put_forecast(forecast, "other call")

    with pytest.raises(ForecastConflict):
        store.put_forecast(forecast, "mine", expected=None)
    assert store.stored_fingerprint("h1", dt.date(2024, 4, 29)) == "other call"


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_result_store_lists_a_months_forecasts_and_keeps_plot_data_and_accuracy(
    kind, stack, clients, tmp_path
):
    s3, bucket = clients("s3"), stack.outputs["ModelsBucketName"]
    store = S3ResultStore(bucket, s3=s3) if kind == "s3" else LocalResultStore(tmp_path)
    series = series_of(daily_kwh(120))
    april = [
        forecast_month(series.until(d), d) for d in (dt.date(2024, 4, 28), dt.date(2024, 4, 29))
    ]
    for result in april:
        store.put_forecast(result.forecast, "f")
    store.put_forecast(forecast_month(series, dt.date(2024, 3, 31)).forecast, "f")
    document = components_document(april[0].components, "h1", dt.date(2024, 4, 28))

    key = store.put_components(document)
    listed = store.month_forecasts("h1", "2024-04")
    store.put_accuracy("h1", b'{"a":1}')

    assert key == components_key("h1", dt.date(2024, 4, 28))
    assert sorted(f.as_of for f in listed) == [dt.date(2024, 4, 28), dt.date(2024, 4, 29)]
    assert store.month_forecasts("h1", "2024-05") == []
    assert store.get_accuracy("h1") == b'{"a":1}'
    assert store.get_accuracy("nobody") is None
    if kind == "s3":
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert MonthlyComponents.model_validate_json(body) == document


def test_reject_sink_overwrites_the_same_refusal(stack, clients):
    s3, bucket = clients("s3"), stack.outputs["ModelsBucketName"]
    item = Quarantined(
        original=b"\xffnot json",
        reason="not_json: Expecting value",
        source="sqs:ArchiveEventsQueue",
        quarantined_at=dt.datetime(2024, 5, 2, tzinfo=dt.UTC),
    )
    sink = S3RejectSink(bucket, s3=s3)

    sink.reject([item])
    sink.reject(
        [item.model_copy(update={"quarantined_at": dt.datetime(2024, 5, 3, tzinfo=dt.UTC)})]
    )

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [reject_key(item)]
    stored = Quarantined.model_validate_json(
        s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read()
    )
    assert stored.original == item.original
