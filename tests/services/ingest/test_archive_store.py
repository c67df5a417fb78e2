"""S3ArchiveStore against a moto server, on the archive bucket of the real template."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from services.ingest.adapters.archive_store import S3ArchiveStore
from services.ingest.core.archive import (
    DayKey,
    StreamPosition,
    summarize_day,
)
from shared.archive_parquet import ARCHIVE_SCHEMA, decode_day, encode_day
from shared.batch import ReadingBatch, datetime_to_us

APRIL_1 = dt.date(2007, 4, 1)
APRIL_1_US = datetime_to_us(dt.datetime(2007, 4, 1, tzinfo=dt.UTC))
KEY = DayKey("uci-sceaux", APRIL_1)
POSITION = StreamPosition("readings", "shardId-000000000001", 49590338271490256608559692538)


def day_rows(n: int = 1440, household: str = "uci-sceaux") -> ReadingBatch:
    rng = np.random.default_rng(7)
    return ReadingBatch(
        household,
        APRIL_1_US + np.arange(n, dtype=np.int64) * 60_000_000,
        {
            "global_active_power_kw": rng.uniform(0.1, 5.0, n).round(3),
            "voltage_v": rng.uniform(230, 250, n).round(2),
            "sub_metering_3_wh": rng.integers(0, 20, n).astype(float),
        },
    )


@pytest.fixture
def archive(deploy_stack, clients) -> tuple[S3ArchiveStore, Any, str]:
    bucket = deploy_stack().outputs["ArchiveBucketName"]
    s3 = clients("s3")
    return S3ArchiveStore(bucket, s3=s3), s3, bucket


def test_store_read_day_of_nothing_is_none(archive):
    store, _, _ = archive
    assert store.read_day(KEY) is None


def test_store_write_then_read_round_trips_rows_and_position(archive):
    store, s3, bucket = archive
    rows = day_rows()

    key = store.write_day(KEY, rows, merged_up_to=POSITION)
    stored = store.read_day(KEY)

    assert key == "readings/household=uci-sceaux/date=2007-04-01/data.parquet"
    assert stored is not None
    assert stored.merged_up_to == POSITION
    np.testing.assert_array_equal(stored.rows.timestamps_us, rows.timestamps_us)
    for name, column in rows.columns.items():
        np.testing.assert_array_equal(stored.rows.columns[name], column)
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["sequence-number"] == "49590338271490256608559692538"
    assert head["Metadata"]["rows"] == "1440"
    assert head["ContentType"] == "application/vnd.apache.parquet"


def test_store_object_is_explicit_parquet_readable_by_any_reader(archive):
    store, s3, bucket = archive

    key = store.write_day(KEY, day_rows(), merged_up_to=POSITION)

    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    parquet = pq.ParquetFile(io.BytesIO(data))
    assert parquet.schema_arrow.equals(ARCHIVE_SCHEMA)
    assert parquet.metadata.num_row_groups == 1
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    assert parquet.read().column("global_intensity_a").null_count == 1440


def test_store_rewrite_replaces_the_one_object(archive):
    store, s3, bucket = archive
    store.write_day(KEY, day_rows(10), merged_up_to=POSITION)

    store.write_day(KEY, day_rows(20), merged_up_to=POSITION)

    listed = s3.list_objects_v2(Bucket=bucket, Prefix="readings/")["Contents"]
    assert [o["Key"] for o in listed] == [store.day_key(KEY)]
    stored = store.read_day(KEY)
    assert stored is not None
    assert len(stored.rows) == 20


def test_encode_day_same_rows_same_bytes():
    rows = day_rows()
    copy = ReadingBatch(rows.household_id, rows.timestamps_us.copy(), dict(rows.columns))

    assert encode_day(rows) == encode_day(copy) == encode_day(decode_day(encode_day(rows)))


def test_store_write_day_refuses_rows_of_another_day_or_household(archive):
    store, _, _ = archive
    with pytest.raises(ValueError, match="belong"):
        store.write_day(KEY, day_rows(1441), merged_up_to=POSITION)  # 1441st minute: 2 April
    with pytest.raises(ValueError, match="belong"):
        store.write_day(KEY, day_rows(household="other"), merged_up_to=POSITION)
    assert store.read_day(KEY) is None


def test_store_read_day_written_by_another_tool_has_no_position(archive):
    store, s3, bucket = archive
    s3.put_object(Bucket=bucket, Key=store.day_key(KEY), Body=encode_day(day_rows(5)))

    stored = store.read_day(KEY)

    assert stored is not None
    assert stored.merged_up_to is None  # so the next merge dedupes by content only
    assert len(stored.rows) == 5


def test_store_read_day_refuses_a_misplaced_household(archive):
    store, s3, bucket = archive
    s3.put_object(Bucket=bucket, Key=store.day_key(KEY), Body=encode_day(day_rows(5, "other")))

    with pytest.raises(ValueError, match="other"):
        store.read_day(KEY)


def test_store_write_summary_only_when_its_content_changed(archive):
    store, s3, bucket = archive
    rows = day_rows()
    key = store.summary_key(KEY)

    first = store.write_summary(summarize_day(rows, APRIL_1))
    etag = s3.head_object(Bucket=bucket, Key=key)["ETag"]
    again = store.write_summary(summarize_day(rows, APRIL_1))
    changed = store.write_summary(summarize_day(rows.slice(0, 100), APRIL_1))

    assert (first, again, changed) == (True, False, True)
    assert key == "summaries/household=uci-sceaux/date=2007-04-01.json"
    assert s3.head_object(Bucket=bucket, Key=key)["ETag"] != etag
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body == summarize_day(rows.slice(0, 100), APRIL_1).model_dump_json().encode()


def test_store_prefix_applies_to_every_key(deploy_stack, clients):
    bucket = deploy_stack().outputs["ArchiveBucketName"]
    s3 = clients("s3")
    store = S3ArchiveStore(bucket, s3=s3, prefix="tenant-a/")

    store.write_day(KEY, day_rows(3), merged_up_to=POSITION)
    store.write_summary(summarize_day(day_rows(3), APRIL_1))

    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [
        "tenant-a/readings/household=uci-sceaux/date=2007-04-01/data.parquet",
        "tenant-a/summaries/household=uci-sceaux/date=2007-04-01.json",
    ]


def test_store_other_s3_errors_are_raised_not_taken_for_absence(clients):
    store = S3ArchiveStore("no-such-bucket-anywhere", s3=clients("s3"))

    with pytest.raises(ClientError, match="NoSuchBucket"):
        store.read_day(KEY)


def test_store_write_conflicts_keeps_the_replaced_rows_under_conflicts(archive):
    store, s3, bucket = archive
    replaced = day_rows(3)

    key = store.write_conflicts(KEY, replaced, replaced_by=POSITION)
    again = store.write_conflicts(KEY, replaced, replaced_by=POSITION)  # a retried write

    assert key == again
    assert key.startswith(
        "conflicts/household=uci-sceaux/date=2007-04-01/"
        "shardId-000000000001-49590338271490256608559692538-"
    )
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="conflicts/")
    assert [o["Key"] for o in listing["Contents"]] == [key]
    stored = s3.get_object(Bucket=bucket, Key=key)
    assert decode_day(stored["Body"].read()).timestamps_us.tolist() == (
        replaced.timestamps_us.tolist()
    )
    assert stored["Metadata"]["readings-key"] == store.day_key(KEY)
    assert stored["Metadata"]["replaced-by-sequence-number"] == str(POSITION.sequence)
