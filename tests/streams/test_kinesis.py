"""KinesisPublisher: limits, retries of only the failed entries, and clear failure."""

from __future__ import annotations

import random
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shared.retry import RetryPolicy
from shared.streams.kinesis import (
    MAX_ENTRIES_PER_REQUEST,
    MAX_RECORD_BYTES,
    MAX_REQUEST_BYTES,
    KinesisPublisher,
    plan_requests,
)
from shared.streams.ports import PublishError, StreamRecord


class FakeKinesis:
    """PutRecords that rejects entries as scripted: ``reject(call, index, record)``."""

    def __init__(self, reject: Any = lambda call, i, record: None, raise_on: Any = None) -> None:
        self.reject = reject
        self.raise_on = raise_on
        self.calls: list[list[bytes]] = []
        self.stored: list[tuple[str, bytes]] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        call = len(self.calls)
        self.calls.append([r["Data"] for r in Records])
        if self.raise_on and (error := self.raise_on(call)):
            raise ClientError({"Error": {"Code": error, "Message": "scripted"}}, "PutRecords")
        results, failed = [], 0
        for i, entry in enumerate(Records):
            code = self.reject(call, i, entry)
            if code:
                failed += 1
                results.append({"ErrorCode": code, "ErrorMessage": "scripted"})
            else:
                self.stored.append((entry["PartitionKey"], entry["Data"]))
                results.append({"SequenceNumber": str(len(self.stored)), "ShardId": "s-0"})
        return {"FailedRecordCount": failed, "Records": results}


def records(n: int, keys: int = 1000, size: int = 10) -> list[StreamRecord]:
    return [StreamRecord(f"h{i % keys}", f"{i:0{size}d}".encode()) for i in range(n)]


def publisher(client: Any, **kwargs: Any) -> tuple[KinesisPublisher, list[float]]:
    sleeps: list[float] = []
    return (
        KinesisPublisher("readings", client, sleep=sleeps.append, rng=random.Random(7), **kwargs),
        sleeps,
    )


def test_publisher_retries_only_failed_entries_with_backoff():
    throttled = "ProvisionedThroughputExceededException"
    client = FakeKinesis(reject=lambda call, i, r: throttled if call == 0 and i % 3 == 0 else None)
    pub, sleeps = publisher(client)

    report = pub.publish(records(30))

    assert len(client.calls) == 2
    assert client.calls[1] == [r.data for r in records(30)[::3]]  # only the rejected ones
    assert sorted(d for _, d in client.stored) == sorted(r.data for r in records(30))
    assert report.retried_entries == 10
    assert report.throttled_entries == 10
    assert len(sleeps) == 1
    assert 0 <= sleeps[0] <= RetryPolicy().base_delay_s


def test_publisher_gives_clear_error_with_failed_records_after_bound():
    client = FakeKinesis(reject=lambda call, i, r: "InternalFailure" if i == 0 else None)
    pub, sleeps = publisher(client, retry=RetryPolicy(max_attempts=4, base_delay_s=0.1))

    with pytest.raises(PublishError, match="still failed after 4 PutRecords attempts") as info:
        pub.publish(records(5))

    assert [r.data for r in info.value.failed] == [records(5)[0].data]
    assert info.value.error_codes == ("InternalFailure",)
    assert len(client.stored) == 4
    assert len(sleeps) == 3
    assert all(s <= 0.1 * 2**k for k, s in enumerate(sleeps))


def test_publisher_retries_whole_request_throttling_but_not_config_errors():
    flaky = FakeKinesis(raise_on=lambda call: "ThrottlingException" if call < 2 else None)
    pub, _ = publisher(flaky)
    assert pub.publish(records(3)).requests == 3
    assert len(flaky.stored) == 3

    missing = FakeKinesis(raise_on=lambda call: "ResourceNotFoundException")
    pub, sleeps = publisher(missing)
    with pytest.raises(PublishError, match="ResourceNotFoundException"):
        pub.publish(records(3))
    assert len(missing.calls) == 1
    assert sleeps == []


def test_publisher_rejects_oversized_record_before_any_call():
    client = FakeKinesis()
    pub, _ = publisher(client)
    with pytest.raises(ValueError, match="at most 1048576"):
        pub.publish([StreamRecord("h", b"x" * MAX_RECORD_BYTES)])
    assert client.calls == []


def test_publisher_rejects_unencodable_partition_key_before_any_call():
    client = FakeKinesis()
    pub, _ = publisher(client)
    with pytest.raises(ValueError, match="not valid Unicode"):
        pub.publish([StreamRecord("h1", b"ok"), StreamRecord("\ud800", b"x")])
    assert client.calls == []


def test_plan_requests_respects_entry_and_byte_limits():
    many = records(1234)
    plans = list(plan_requests(many))
    assert [len(p) for p in plans] == [500, 500, 234]
    big = [StreamRecord(f"k{i}", b"x" * 900_000) for i in range(12)]
    sizes = [sum(len(big[i].data) + 2 for i in p) for p in plan_requests(big)]
    assert all(s <= MAX_REQUEST_BYTES for s in sizes)
    assert sum(map(len, plan_requests(big))) == 12
    assert max(len(p) for p in plans) <= MAX_ENTRIES_PER_REQUEST


def test_plan_requests_keeps_one_record_per_key_in_order():
    same_key = [StreamRecord("h", bytes([i])) for i in range(4)] + [StreamRecord("g", b"g")]
    plans = list(plan_requests(same_key))
    assert plans == [[0, 4], [1], [2], [3]]
    assert list(plan_requests(same_key, one_per_key=False)) == [[0, 1, 2, 3, 4]]


def test_publisher_on_moto_writes_every_record_to_its_key_shard(deploy_stack, clients):
    stack = deploy_stack(parameters={"ReadingsShardCount": "3"})
    stream = stack.outputs["ReadingsStreamName"]
    kinesis = clients("kinesis")
    sent = records(1500, keys=50)

    report = KinesisPublisher(stream, kinesis).publish(sent)

    got: dict[str, list[bytes]] = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for record in kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]:
            got.setdefault(record["PartitionKey"], []).append(record["Data"])
    assert report.records == 1500
    assert report.requests == 30
    assert sum(map(len, got.values())) == 1500
    for key, data in got.items():  # each household's records in publish order
        assert data == [r.data for r in sent if r.partition_key == key]
