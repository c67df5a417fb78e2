"""Read back what the pipeline produced: the archive, the quarantine, streams, EMF logs.

Every scenario judges the pipeline by its outputs in the stack (never by what a handler
says it did): readings in the Parquet archive, items in the quarantine, records on a
stream, metrics in the function logs.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.archive_parquet import decode_day
from shared.quarantine import read_quarantine_object
from shared.schema import Quarantined


def _keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]


@dataclass(frozen=True)
class ArchiveContents:
    """Archived timestamps per household and the raw bytes of every archive object."""

    timestamps: dict[str, np.ndarray]
    objects: dict[str, bytes]

    @property
    def rows(self) -> int:
        return sum(len(t) for t in self.timestamps.values())

    def duplicated(self) -> int:
        """Rows beyond the first for the same (household, timestamp)."""
        return sum(len(t) - len(np.unique(t)) for t in self.timestamps.values())

    def missing(self, expected: dict[str, np.ndarray]) -> int:
        """Expected (household, timestamp) pairs that are not in the archive."""
        return sum(
            int(np.count_nonzero(~np.isin(want, self.timestamps.get(h, np.empty(0, np.int64)))))
            for h, want in expected.items()
        )


def read_archive(s3: Any, bucket: str) -> ArchiveContents:
    """Every ``readings/`` Parquet object and ``summaries/`` document of the archive."""
    stamps: dict[str, list[np.ndarray]] = {}
    objects: dict[str, bytes] = {}
    for prefix in ("readings/", "summaries/"):
        for key in _keys(s3, bucket, prefix):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            objects[key] = body
            if key.endswith(".parquet"):
                rows = decode_day(body)
                stamps.setdefault(rows.household_id, []).append(rows.timestamps_us)
    return ArchiveContents({h: np.concatenate(t) for h, t in stamps.items()}, objects)


def read_quarantine(s3: Any, bucket: str, prefix: str = "quarantine/") -> list[Quarantined]:
    """Every quarantined item stored in the bucket (objects hold batches of items)."""
    return [
        item
        for key in _keys(s3, bucket, prefix)
        for item in read_quarantine_object(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    ]


def read_shards(kinesis: Any, stream: str) -> dict[str, list[dict[str, Any]]]:
    """Every record (as GetRecords returns it) of every shard, from the start."""
    shards: dict[str, list[dict[str, Any]]] = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records = shards.setdefault(shard["ShardId"], [])
        while iterator:
            reply = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records += reply["Records"]
            if not reply["Records"] and not reply.get("MillisBehindLatest"):
                break
            iterator = reply.get("NextShardIterator")
    return shards


def read_stream(kinesis: Any, stream: str) -> list[tuple[str, bytes]]:
    """(partition key, data) of every record, shard by shard."""
    return [
        (r["PartitionKey"], r["Data"]) for rs in read_shards(kinesis, stream).values() for r in rs
    ]


def emf_metrics(lines: Iterable[str]) -> Counter[str]:
    """Sum of every EMF metric value in Powertools' JSON log lines."""
    totals: Counter[str] = Counter()
    for line in lines:
        if '"_aws"' not in line:
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError:
            continue
        for directive in document.get("_aws", {}).get("CloudWatchMetrics", []):
            for metric in directive.get("Metrics", []):
                value = document.get(metric["Name"], 0)
                totals[metric["Name"]] += sum(value) if isinstance(value, list) else value
    return totals


def emf_metrics_in(path: Path) -> Counter[str]:
    """The EMF metrics a function's log file holds (the runner writes one per function)."""
    return emf_metrics(path.read_text().splitlines()) if path.exists() else Counter()
