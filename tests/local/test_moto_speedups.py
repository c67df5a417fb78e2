"""The local stack's moto speed-ups return what moto returns, in the same order."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from wattstream.local.moto_speedups import install


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    install()
    with mock_aws():
        yield


def test_moto_speedups_prefix_listing_finds_exactly_the_prefix_with_delimiters(aws):
    s3 = boto3.client("s3")
    s3.create_bucket(
        Bucket="bucket-b", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    keys = [
        f"summaries/household=h{h}/date=2013-06-{d:02d}.json" for h in range(12) for d in (1, 2)
    ]
    for key in [*keys, "readings/household=h1/x.parquet", "summaries/household=h1x"]:
        s3.put_object(Bucket="bucket-b", Key=key, Body=b"1")
    s3.delete_object(Bucket="bucket-b", Key="summaries/household=h2/date=2013-06-01.json")

    def listed(**kwargs: str) -> tuple[list[str], list[str]]:
        reply = s3.list_objects_v2(Bucket="bucket-b", **kwargs)
        return (
            [c["Key"] for c in reply.get("Contents", [])],
            [p["Prefix"] for p in reply.get("CommonPrefixes", [])],
        )

    assert listed(Prefix="summaries/household=h1/") == (
        [
            "summaries/household=h1/date=2013-06-01.json",
            "summaries/household=h1/date=2013-06-02.json",
        ],
        [],
    )
    assert listed(Prefix="summaries/household=h2/")[0] == [
        "summaries/household=h2/date=2013-06-02.json"
    ]
    folders = listed(Prefix="summaries/", Delimiter="/")[1]
    assert folders == sorted(f"summaries/household=h{h}/" for h in range(12))
    assert len(listed()[0]) == len(keys) + 2 - 1


def test_moto_speedups_get_records_reads_a_shard_in_order_from_any_position(aws):
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="s", ShardCount=1)
    shard = kinesis.describe_stream(StreamName="s")["StreamDescription"]["Shards"][0]["ShardId"]
    numbers = [
        kinesis.put_record(StreamName="s", Data=str(i).encode(), PartitionKey="k")["SequenceNumber"]
        for i in range(25)
    ]
    assert [int(n) for n in numbers] == list(range(1, 26))  # the last number, found at the end

    def read(iterator: str, limit: int) -> tuple[list[bytes], str]:
        reply = kinesis.get_records(ShardIterator=iterator, Limit=limit)
        return [r["Data"] for r in reply["Records"]], reply["NextShardIterator"]

    iterator = kinesis.get_shard_iterator(
        StreamName="s", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    seen: list[bytes] = []
    for _ in range(4):
        batch, iterator = read(iterator, 10)
        seen += batch
    assert seen == [str(i).encode() for i in range(25)]
    assert read(iterator, 10)[0] == []  # at the end: nothing, and no error
    after = kinesis.get_shard_iterator(
        StreamName="s",
        ShardId=shard,
        ShardIteratorType="AFTER_SEQUENCE_NUMBER",
        StartingSequenceNumber=numbers[19],
    )["ShardIterator"]
    assert read(after, 100)[0] == [str(i).encode() for i in range(20, 25)]


def test_moto_speedups_install_patches_moto_once_and_stays_idempotent():
    # The equivalence tests above pass on plain moto too; this one fails if install() stops
    # replacing moto's listing and shard reads (the local stack would walk whole stores again).
    from moto.kinesis.models import Shard
    from moto.s3.models import S3Backend

    install()
    patched = (S3Backend.list_objects, Shard.get_records, Shard.get_max_sequence_number)
    install()
    assert (S3Backend.list_objects, Shard.get_records, Shard.get_max_sequence_number) == patched
    for method in patched:
        assert method.__module__ == "wattstream.local.moto_speedups"
