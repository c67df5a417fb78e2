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
from shared.quarantine import _batches
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


def test_quarantine_stores_each_item_in_s3_and_announces_it_on_sqs(target):
    items = [item(n) for n in range(3)]

    sink(target).quarantine(items)

    keys = stored_keys(target)
    assert keys == sorted(quarantine_key(i) for i in items)
    for key, expected in zip(sorted(keys), sorted(items, key=quarantine_key), strict=True):
        stored = target["s3"].get_object(Bucket=target["bucket"], Key=key)["Body"].read()
        assert Quarantined.model_validate_json(stored) == expected
    received = [Quarantined.model_validate(m) for m in messages(target)]
    assert sorted(received, key=quarantine_key) == sorted(items, key=quarantine_key)


def test_quarantine_redelivered_items_overwrite_their_own_objects(target):
    items = [item(n) for n in range(3)]
    quarantine = sink(target)

    quarantine.quarantine(items)
    quarantine.quarantine(items)

    assert len(stored_keys(target)) == 3


def test_quarantine_sends_more_than_ten_items_in_several_batches(target):
    items = [item(n) for n in range(23)]

    sink(target).quarantine(items)

    assert len(messages(target)) == 23


def test_quarantine_item_over_sqs_limit_sends_a_pointer_to_s3(target):
    large = item(1, original=bytes(range(256)) * 1200)  # 300 KiB, ~400 KiB as JSON

    sink(target).quarantine([large, item(2)])

    bodies = messages(target)
    (pointer,) = [b for b in bodies if b.get("pointer")]
    assert pointer["key"] == quarantine_key(large)
    assert pointer["original_bytes"] == len(large.original)
    assert all(len(json.dumps(b)) < SQS_MAX_MESSAGE_BYTES for b in bodies)
    stored = target["s3"].get_object(Bucket=target["bucket"], Key=pointer["key"])["Body"].read()
    assert Quarantined.model_validate_json(stored).original == large.original


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

    sink(target, sqs=flaky, sleep=sleeps.append).quarantine([item(n) for n in range(10)])

    assert flaky.calls == [10, 4, 4]
    assert len(sleeps) == 2
    bodies = messages(target)
    assert sorted(b["coordinates"]["sequence_or_offset"] for b in bodies) == sorted(
        str(n) for n in range(10)
    )


def test_quarantine_raises_when_entries_keep_failing(target):
    flaky = FlakySqs(target["sqs"], failures=2, times=99)

    with pytest.raises(QuarantineError, match="2 quarantine messages could not be sent"):
        sink(target, sqs=flaky, sleep=lambda s: None, max_attempts=3).quarantine(
            [item(n) for n in range(5)]
        )

    assert flaky.calls == [5, 2, 2]


def test_quarantine_does_not_retry_sender_faults(target):
    flaky = FlakySqs(target["sqs"], failures=1, times=99, sender_fault=True)

    with pytest.raises(QuarantineError):
        sink(target, sqs=flaky, sleep=lambda s: None).quarantine([item(0), item(1)])

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

    key = quarantine_key(first)

    assert key == quarantine_key(later_same_day)
    assert key != quarantine_key(other_position)
    assert key.startswith("quarantine/upload_uploads_.._h1_a_b.txt/2024/06/01/wrong_type/")


def test_quarantine_batches_stay_within_ten_entries_and_256_kib():
    bodies = ["x" * 100_000] * 5 + ["y"] * 12

    batches = _batches(bodies)

    assert [len(b) for b in batches] == [2, 2, 10, 3]
    assert sum(len(b) for b in batches) == 17
    assert all(sum(len(x) for x in b) <= SQS_MAX_MESSAGE_BYTES for b in batches)
