"""What a pipeline run produced, read back so that runs over different buses compare.

Used by the Kafka tests and ``python -m bench kafka``: the same real readings as stream
records, every message of a Kinesis stream or a Kafka topic, forecast documents as
canonical JSON, and the archive's Parquet tables by object key.
"""

from __future__ import annotations

import io
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from shared.batch import ReadingBatch
from shared.codec import decode_record
from shared.publishing import stream_records
from shared.streams.ports import StreamRecord
from shared.uci import iter_uci

US_PER_DAY = 86_400_000_000


def uci_days(
    source: Path,
    days: int = 2,
    households: Iterable[str] = ("uci-a", "uci-b"),
    *,
    per_record: int = 120,
) -> list[StreamRecord]:
    """The first ``days`` UTC days of a UCI file, copied for each household, as records."""
    batch = ReadingBatch.concat([c.readings for c in iter_uci(source)]).sorted_by_time()
    start = int(batch.timestamps_us[0])
    start -= start % US_PER_DAY
    keep = np.flatnonzero(batch.timestamps_us < start + days * US_PER_DAY)
    batch = batch.take(keep)
    per_household = [
        stream_records(
            [ReadingBatch(h, batch.timestamps_us, batch.columns)], readings_per_record=per_record
        )
        for h in households
    ]
    # Interleaved in time, as live meters publish: a consumer batch then holds a few hours
    # of every household, not days of one (the realtime core forecasts at most 48 h of
    # steps per household and batch; older steps are superseded, so a batch that held
    # more would make the forecasts depend on where the batches were cut).
    return [r for group in itertools.zip_longest(*per_household) for r in group if r]


def readings_in(records: Iterable[StreamRecord]) -> int:
    return sum(len(decode_record(r.data).timestamps_us) for r in records)


def archive_tables(s3: Any, stack: Any) -> dict[str, Any]:
    """Archive object key -> its Parquet table (object metadata, i.e. coordinates, ignored)."""
    bucket = stack.outputs["ArchiveBucketName"]
    tables = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="readings/"):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            table = pq.read_table(io.BytesIO(body))
            tables[item["Key"]] = table.replace_schema_metadata(None)
    return tables


def kinesis_messages(kinesis: Any, stream: str) -> list[bytes]:
    """Every record's data on a Kinesis stream, shard by shard."""
    data = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            reply = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            data += [r["Data"] for r in reply["Records"]]
            if not reply["Records"] and not reply.get("MillisBehindLatest"):
                break
            iterator = reply.get("NextShardIterator")
    return data


def kafka_messages(
    bootstrap: str, topic: str, *, idle_s: float = 3.0, timeout_s: float = 60.0
) -> list[Any]:
    """Every message of a topic, from every partition's start (until ``idle_s`` of quiet).

    Not from end offsets: the tansu broker reports a partition's end as the start of its
    last record batch + 1, so "read up to the end offset" would miss records.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{topic}",
            "enable.auto.commit": False,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle_s and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            messages.append(message)
            last = time.monotonic()
    finally:
        consumer.close()
    return messages


def documents(payloads: Iterable[bytes]) -> Counter[str]:
    """Forecast documents as canonical JSON, with how many times each was seen."""
    return Counter(json.dumps(json.loads(p), sort_keys=True) for p in payloads)
