"""Ingest benchmark: readings/s published to Kinesis, ours vs one PutRecord per reading.

``python -m bench ingest [--households N] [--shards N] [--naive-readings N] [--source FILE]``

Both paths publish real data (the April 2007 UCI slice replayed as ``--households``
households by ``services.ingest.sources.replay_series``, unpaced) to the ``readings``
stream of the local stack: moto server started in this process (``EmbeddedAws``) and
provisioned from ``deploy/template.yaml`` with ``ReadingsShardCount = --shards``.

* **ours**: the replay end to end: generate each window of the fleet, validate it
  (``sanity_mask``, one vectorised pass), aggregate a day of each household per record
  (``shared.codec``), publish through ``KinesisPublisher`` (PutRecords of up to 500
  records / 5 MiB, one record per household per request, retries of failed entries);
* **naive** (the original design): per reading, build a ``MeterReading`` (pydantic),
  ``check_sanity`` it, dump it as one JSON document and send it with one ``PutRecord``.
  It runs on the first ``--naive-readings`` readings of the same replay (a smaller
  sample: at a few hundred readings/s the full set would take hours); rates are
  per-second, so the sample size does not favour either side.

The moto server runs in this process, so its work (HTTP parsing, base64, storing) shares
our core: ``cores`` is 1 and the rates are per core *including* the emulated Kinesis.
moto appends to a shard in time that grows with the shard's length, so use enough shards
(default 16) to keep that out of the measurement; both paths write far fewer than a
thousand records per shard. Everything published is read back from every shard and
decoded after the timing, and must add up to what both paths reported.

Real Kinesis limits are reported from the measured record sizes: a shard takes at most
1,000 records/s and 1 MiB/s. At ``bytes_per_record`` that tells which limit binds, how
many readings/s one shard carries, and how many shards the measured rate would need.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

from services.ingest.core.fleet import UciSeries
from services.ingest.core.replay import plan_replay, replay_window
from services.ingest.sources import ReplayOptions, load_uci_series, replay_series
from shared.codec import decode_record
from shared.schema import MeterReading
from shared.streams.kinesis import KinesisPublisher
from shared.validation import check_sanity
from wattstream.local.server import EmbeddedAws, client_factory, provision

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT / "data" / "uci_household_power_consumption_2007-04.txt.gz"
TEMPLATE = ROOT / "deploy" / "template.yaml"
REGION = "us-east-1"
SHARD_RECORDS_PER_S = 1000
SHARD_BYTES_PER_S = 1024 * 1024


def naive_sample(series: UciSeries, households: int, count: int) -> list[dict[str, Any]]:
    """The first ``count`` readings of the same replay, as the dicts a meter would POST."""
    plan = plan_replay(households, minutes=len(series))
    rows: list[dict[str, Any]] = []
    k = 0
    while len(rows) < count and k < len(series):
        window = replay_window(series, plan, shift_us=0, k0=k, k1=min(k + 60, len(series)))
        for batch in window.batches():
            for reading in batch.to_readings():
                rows.append(reading.model_dump(exclude_none=True))
        k += 60
    return rows[:count]


def run_naive(rows: list[dict[str, Any]], client: Any, stream: str) -> tuple[float, int]:
    """One model, one sanity check, one JSON document and one PutRecord per reading."""
    now = dt.datetime.now(dt.UTC)
    sent = 0
    start = time.perf_counter()
    for row in rows:
        reading = MeterReading.model_validate(row)
        if check_sanity(reading, now=now) is not None:
            continue
        data = json.dumps(reading.model_dump(mode="json")).encode()
        client.put_record(StreamName=stream, Data=data, PartitionKey=reading.household_id)
        sent += len(data) + len(reading.household_id)
    return time.perf_counter() - start, sent


def read_back(client: Any, stream: str) -> tuple[int, int]:
    """``(records, readings)`` on every shard of the stream, each record decoded."""
    records = readings = 0
    shards = client.list_shards(StreamName=stream)["Shards"]
    for shard in shards:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=10_000)
            for record in page["Records"]:
                readings += len(decode_record(record["Data"]))
            records += len(page["Records"])
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return records, readings


def shard_limits(bytes_per_record: float, readings_per_record: float) -> dict[str, Any]:
    """What one real Kinesis shard carries at these record sizes."""
    records_per_s = min(SHARD_RECORDS_PER_S, SHARD_BYTES_PER_S / bytes_per_record)
    return {
        "records_per_s": round(records_per_s, 1),
        "readings_per_s": round(records_per_s * readings_per_record),
        "binding": "bytes"
        if SHARD_RECORDS_PER_S * bytes_per_record > SHARD_BYTES_PER_S
        else "records",
    }


def run(source: Path, *, households: int, shards: int, naive_readings: int) -> dict[str, Any]:
    series = load_uci_series(source)
    print(
        f"ingest benchmark: {source.name} ({series.complete:,} complete minutes) replayed as "
        f"{households:,} households to a {shards}-shard stream on an in-process moto server"
    )
    with EmbeddedAws() as aws:
        stack = provision(
            TEMPLATE,
            endpoint_url=aws.endpoint_url,
            region=REGION,
            stack_name="bench-ingest",
            parameters={"ReadingsShardCount": str(shards)},
        )
        client = client_factory(aws.endpoint_url, REGION)("kinesis")
        stream = stack.outputs["ReadingsStreamName"]

        rows = naive_sample(series, households, naive_readings)
        naive_s, naive_bytes = run_naive(rows, client, stream)

        publisher = KinesisPublisher(stream, client)
        start = time.perf_counter()
        options = ReplayOptions(speed="max", households=households, start="original")
        report = replay_series(series, publisher, options)
        ours_s = time.perf_counter() - start
        stored_records, stored_readings = read_back(client, stream)

    n = report.readings_published
    expected = (report.records + len(rows), n + len(rows))
    assert (stored_records, stored_readings) == expected, (
        f"stream holds {stored_records} records / {stored_readings} readings, published {expected}"
    )
    assert n == households * series.complete, "every real row once per household"
    assert report.rejected == 0, "the real data passes validation"
    readings_per_s = n / ours_s
    naive_per_s = len(rows) / naive_s
    bytes_per_record = report.bytes / report.records
    readings_per_record = n / report.records
    naive_bytes_per_record = naive_bytes / len(rows)
    ours_limit = shard_limits(bytes_per_record, readings_per_record)
    naive_limit = shard_limits(naive_bytes_per_record, 1)
    print(
        f"  ours : {n:>10,} readings in {ours_s:7.2f} s = {readings_per_s:>10,.0f} readings/s  "
        f"({report.records:,} records of {readings_per_record:,.0f} readings, "
        f"{bytes_per_record:,.0f} B; {report.requests:,} PutRecords)"
    )
    print(
        f"  naive: {len(rows):>10,} readings in {naive_s:7.2f} s = {naive_per_s:>10,.0f} "
        f"readings/s  (one PutRecord of {naive_bytes_per_record:.0f} B per reading; "
        f"sample of {len(rows):,} readings)"
    )
    print(
        "  real Kinesis, per shard (1,000 records/s, 1 MiB/s): ours "
        f"{ours_limit['readings_per_s']:,} readings/s ({ours_limit['binding']} bound: "
        "1,000 records/s would be "
        f"{SHARD_RECORDS_PER_S * bytes_per_record / 1e6:.1f} MB/s), naive "
        f"{naive_limit['readings_per_s']:,} readings/s ({naive_limit['binding']} bound)"
    )
    print(f"  read back: {stored_records:,} records, {stored_readings:,} readings, all decoded")
    cores = 1
    return {
        "benchmark": "ingest",
        "source": source.name,
        "households": households,
        "shards": shards,
        "cores": cores,
        "cpu_count": os.cpu_count(),
        "moto_in_process": True,
        "python": platform.python_version(),
        "readings": n,
        "seconds": round(ours_s, 3),
        "readings_per_s": round(readings_per_s),
        "readings_per_s_per_core": round(readings_per_s / cores),
        "naive_readings": len(rows),
        "naive_seconds": round(naive_s, 3),
        "naive_readings_per_s": round(naive_per_s),
        "naive_sample_note": "naive measured on the first naive_readings of the same replay",
        "ratio": round(readings_per_s / naive_per_s, 1),
        "records": report.records,
        "requests": report.requests,
        "throttled_entries": report.throttled_entries,
        "readings_per_record": round(readings_per_record, 1),
        "bytes_per_record": round(bytes_per_record, 1),
        "bytes_per_reading": round(report.bytes / n, 2),
        "naive_bytes_per_record": round(naive_bytes_per_record, 1),
        "records_per_s": round(report.records / ours_s, 1),
        "records_per_shard_second": round(report.records / ours_s / shards, 1),
        "shard_bytes_per_s_at_1000_records_per_s": round(SHARD_RECORDS_PER_S * bytes_per_record),
        "shard_limit_bytes_per_s": SHARD_BYTES_PER_S,
        "shard_limit_records_per_s": ours_limit["records_per_s"],
        "shard_limit_readings_per_s": ours_limit["readings_per_s"],
        "shard_limit_binding": ours_limit["binding"],
        "naive_shard_limit_readings_per_s": naive_limit["readings_per_s"],
        "aws_shards_for_measured_rate": math.ceil(readings_per_s / ours_limit["readings_per_s"]),
        "read_back_records": stored_records,
        "read_back_readings": stored_readings,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench ingest", description=__doc__)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="UCI text file")
    parser.add_argument("--households", type=int, default=100, help="replayed households")
    parser.add_argument("--shards", type=int, default=16, help="shards of the readings stream")
    parser.add_argument(
        "--naive-readings", type=int, default=2000, help="sample size of the naive baseline"
    )
    args = parser.parse_args(argv)
    result = run(
        args.source,
        households=args.households,
        shards=args.shards,
        naive_readings=args.naive_readings,
    )
    print(json.dumps(result))
    return 0
