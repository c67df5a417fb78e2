"""S3SqsQuarantine against the real template on a moto server (archive bucket + queue)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from services.ingest.adapters.quarantine import (
    SQS_MAX_MESSAGE_BYTES,
    QuarantineError,
    S3SqsQuarantine,
    quarantine_key,
)
from shared.quarantine import _batches, message_items, read_quarantine_object
from shared.schema import Quarantined, StreamCoordinates

NOW = dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)


def item(n: int = 0, *, original: bytes | None = None, source: str = "http") -> Quarantined:
    return Quarantined(
        original=original if original is not None else b'{"bad": %d}' % n,
        reason=f"wrong_type: item {n} is bad",
        source=source,
        coordinates=StreamCoordinates(
            stream=source, shard_or_partition="item", sequence_or_offset=str(n)
        ),
        quarantined_at=NOW,
    )


@pytest.fixture
def target(deploy_stack, clients) -> dict[str, Any]:
    stack = deploy_stack()
    sqs = clients("sqs")
    name = stack.outputs["QuarantineQueueUrl"].rsplit("/", 1)[1]
    return {
        "bucket": stack.outputs["ArchiveBucketName"],
        "queue_url": sqs.get_queue_url(QueueName=name)["QueueUrl"],
        "s3": clients("s3"),
        "sqs": sqs,
    }


def sink(target: dict[str, Any], **kwargs: Any) -> S3SqsQuarantine:
    return S3SqsQuarantine(
        target["bucket"],
        target["queue_url"],
        s3=kwargs.pop("s3", target["s3"]),
        sqs=kwargs.pop("sqs", target["sqs"]),
        **kwargs,
    )


def messages(target: dict[str, Any]) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    empty = 0
    while empty < 2:
        got = (
            target["sqs"]
            .receive_message(
                QueueUrl=target["queue_url"], MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            .get("Messages", [])
        )
        empty = 0 if got else empty + 1
        bodies.extend(json.loads(m["Body"]) for m in got)
    return bodies


def stored_keys(target: dict[str, Any]) -> list[str]:
    listing = target["s3"].list_objects_v2(Bucket=target["bucket"], Prefix="quarantine/")
    return sorted(o["Key"] for o in listing.get("Contents", []))


def stored_items(target: dict[str, Any], key: str) -> list[Quarantined]:
    body = target["s3"].get_object(Bucket=target["bucket"], Key=key)["Body"].read()
    return read_quarantine_object(body)


def test_quarantine_stores_one_call_in_one_object_and_one_pointer_message(target):
    items = [item(n) for n in range(3)]

    sink(target).quarantine(items)

    (key,) = stored_keys(target)
    assert key == quarantine_key(items)
    assert key.endswith(".jsonl")
    assert stored_items(target, key) == items
    (pointer,) = messages(target)
    assert pointer["pointer"] is True
    assert (pointer["bucket"], pointer["key"], pointer["items"]) == (target["bucket"], key, 3)
    assert pointer["codes"] == {"wrong_type": 3}
    assert pointer["reason"] == items[0].reason
    assert sum(map(message_items, [json.dumps(pointer)])) == 3


def test_quarantine_redelivered_items_overwrite_their_own_objects(target):
    items = [item(n) for n in range(3)]
    quarantine = sink(target)

    quarantine.quarantine(items)
    quarantine.quarantine(items)

    assert len(stored_keys(target)) == 1


def test_quarantine_large_calls_are_split_into_objects_and_batched_pointers(target):
    items = [item(n) for n in range(23)]

    sink(target, max_object_items=2).quarantine(items)

    keys = stored_keys(target)
    assert len(keys) == 12
    assert sorted(
        (q for k in keys for q in stored_items(target, k)), key=lambda q: q.original
    ) == sorted(items, key=lambda q: q.original)
    bodies = messages(target)
    assert len(bodies) == 12
    assert sum(b["items"] for b in bodies) == 23


def test_quarantine_large_item_is_stored_and_announced_by_a_small_pointer(target):
    large = item(1, original=bytes(range(256)) * 1200)  # 300 KiB, ~400 KiB as JSON

    sink(target).quarantine([large, item(2)])

    (pointer,) = messages(target)
    assert pointer["original_bytes"] == len(large.original) + len(item(2).original)
    assert len(json.dumps(pointer)) < 4096
    assert stored_items(target, pointer["key"])[0].original == large.original


class CountingS3:
    """A real S3 client that counts PutObject calls."""

    def __init__(self, s3: Any) -> None:
        self.s3, self.puts = s3, 0

    def put_object(self, **kwargs: Any) -> Any:
        self.puts += 1
        return self.s3.put_object(**kwargs)


def test_quarantine_cost_is_bounded_per_call_not_per_item(target):
    items = [item(n) for n in range(10_000)]
    counting = CountingS3(target["s3"])

    sink(target, s3=counting).quarantine(items)

    assert counting.puts == 1
    (pointer,) = messages(target)
    assert pointer["items"] == 10_000
    assert len(stored_items(target, pointer["key"])) == 10_000


class FlakySqs:
    """A real SQS client that reports the first ``failures`` entries of each call as
    failed (without sending them), ``times`` times: SendMessageBatch's partial failure."""

    def __init__(self, sqs: Any, *, failures: int, times: int, sender_fault: bool = False):
        self.sqs, self.failures, self.times, self.sender_fault = sqs, failures, times, sender_fault
        self.calls: list[int] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(len(Entries))
        if self.times == 0:
            return self.sqs.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)
        self.times -= 1
        failed, sent = Entries[: self.failures], Entries[self.failures :]
        response = self.sqs.send_message_batch(QueueUrl=QueueUrl, Entries=sent) if sent else {}
        response["Failed"] = [
            {"Id": e["Id"], "SenderFault": self.sender_fault, "Code": "InternalError"}
            for e in failed
        ]
        return response


def test_quarantine_retries_only_the_failed_entries(target):
    flaky = FlakySqs(target["sqs"], failures=4, times=2)
    sleeps: list[float] = []

    sink(target, sqs=flaky, sleep=sleeps.append, max_object_items=1).quarantine(
        [item(n) for n in range(10)]
    )

    assert flaky.calls == [10, 4, 4]
    assert len(sleeps) == 2
    bodies = messages(target)
    assert sorted(b["coordinates"]["sequence_or_offset"] for b in bodies) == sorted(
        str(n) for n in range(10)
    )


def test_quarantine_raises_when_entries_keep_failing(target):
    flaky = FlakySqs(target["sqs"], failures=2, times=99)

    with pytest.raises(QuarantineError, match="2 quarantine messages could not be sent"):
        sink(
            target, sqs=flaky, sleep=lambda s: None, max_attempts=3, max_object_items=1
        ).quarantine([item(n) for n in range(5)])

    assert flaky.calls == [5, 2, 2]


def test_quarantine_does_not_retry_sender_faults(target):
    flaky = FlakySqs(target["sqs"], failures=1, times=99, sender_fault=True)

    with pytest.raises(QuarantineError):
        sink(target, sqs=flaky, sleep=lambda s: None, max_object_items=1).quarantine(
            [item(0), item(1)]
        )

    assert flaky.calls == [2]


def test_quarantine_raises_when_s3_refuses_and_announces_nothing(target):
    quarantine = S3SqsQuarantine(
        "no-such-bucket-here", target["queue_url"], s3=target["s3"], sqs=target["sqs"]
    )

    with pytest.raises(QuarantineError, match="could not be written"):
        quarantine.quarantine([item(0)])

    assert messages(target) == []


def test_quarantine_nothing_to_do_makes_no_call():
    S3SqsQuarantine("b", "q", s3=None, sqs=None).quarantine([])


def test_quarantine_key_is_deterministic_and_sanitised():
    first = item(1, source="upload:uploads/../h1/a b.txt")
    later_same_day = first.model_copy(update={"quarantined_at": NOW + dt.timedelta(hours=3)})
    other_position = item(2, source=first.source).model_copy(
        update={"original": first.original, "reason": first.reason}
    )

    key = quarantine_key([first])

    assert key == quarantine_key([later_same_day])
    assert key != quarantine_key([other_position])
    assert key != quarantine_key([first, first])
    assert (
        quarantine_key(
            [first, item(3, source=first.source).model_copy(update={"reason": "negative_power: x"})]
        ).split("/")[-2]
        == "mixed"
    )
    assert key.startswith("quarantine/upload_uploads_.._h1_a_b.txt/2024/06/01/wrong_type/")


def test_quarantine_batches_stay_within_ten_entries_and_256_kib():
    bodies = ["x" * 100_000] * 5 + ["y"] * 12

    batches = _batches(bodies)

    assert [len(b) for b in batches] == [2, 2, 10, 3]
    assert sum(len(b) for b in batches) == 17
    assert all(sum(len(x) for x in b) <= SQS_MAX_MESSAGE_BYTES for b in batches)
