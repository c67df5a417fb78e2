"""Replay benchmark: the full UCI file through ingest -> readings stream -> archive.

``python -m bench replay [--source FILE] [--shards N]``

The whole pipeline on the local stack, in one process: moto server (``EmbeddedAws``)
provisioned from ``deploy/template.yaml``; the UCI file replayed unpaced by
``services.ingest.sources.run_replay`` (parse, validate, aggregate, publish through the
Kinesis adapter); the template's ``ArchiveFunction`` on the local event-source runner
(Parquet per household-day plus daily summaries) running concurrently; the clock stops
when the runner has nothing left to do. Afterwards every archived Parquet object is read
back and its rows counted: ``archived_rows`` must equal ``readings_published``.

Baseline in the same run: parsing the same file alone (``iter_uci``), the floor any
pipeline over it must pay; ``ratio`` = pipeline seconds / parse-only seconds.
Goal (issue 3): the full file (2,075,259 rows) in under 120 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from services.ingest.sources import ReplayOptions, run_replay
from shared.archive_parquet import decode_day
from shared.uci import iter_uci
from wattstream.local.runner import EventSourceRunner
from wattstream.local.server import EmbeddedAws, client_factory, provision

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "template.yaml"
FULL_UCI = ROOT.parent / "shared" / "data" / "uci_household_power_consumption.txt.gz"
REGION = "us-east-1"


def _parse_only_seconds(source: Path) -> float:
    started = time.perf_counter()
    for _ in iter_uci(source):
        pass
    return time.perf_counter() - started


def _archived_rows(s3: object, bucket: str) -> tuple[int, int]:
    rows = objects = 0
    paginator = s3.get_paginator("list_objects_v2")  # type: ignore[attr-defined]
    for page in paginator.paginate(Bucket=bucket, Prefix="readings/"):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()  # type: ignore[attr-defined]
            rows += len(decode_day(body))
            objects += 1
    return rows, objects


def run(source: Path, *, shards: int) -> dict[str, object]:
    parse_only = _parse_only_seconds(source)
    print(f"baseline: parsing {source.name} alone takes {parse_only:.1f} s", flush=True)
    with EmbeddedAws() as aws, tempfile.TemporaryDirectory() as state:
        stack = provision(
            TEMPLATE,
            endpoint_url=aws.endpoint_url,
            region=REGION,
            stack_name="bench-replay",
            parameters={"ReadingsShardCount": str(shards)},
        )
        clients = client_factory(aws.endpoint_url, REGION)
        runner = EventSourceRunner(
            stack,
            clients=clients,
            checkpoint_path=Path(state) / "checkpoints.json",
            functions={"ArchiveFunction"},
            log_dir=Path(state) / "logs",
            idle_sleep_s=0.05,
        )
        from shared.streams.kinesis import KinesisPublisher

        publisher = KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis"))
        started = time.perf_counter()
        runner.start()
        last = [0.0]

        def progress(report: object) -> None:
            now = time.perf_counter()
            if now - last[0] > 5:
                last[0] = now
                print(
                    f"  {now - started:6.1f} s: published {report.readings_published:,} readings",  # type: ignore[attr-defined]
                    flush=True,
                )

        options = ReplayOptions(speed="max", start="original")
        report = run_replay(source, publisher, options, on_progress=progress)
        published_at = time.perf_counter() - started
        print(f"published in {published_at:.1f} s; waiting for the archive ...", flush=True)
        runner.stop()
        runner.drain(timeout_s=1800)
        seconds = time.perf_counter() - started
        stats = runner.stats()["ArchiveFunctionReadings"]
        archived, objects = _archived_rows(clients("s3"), stack.outputs["ArchiveBucketName"])
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"archived {archived:,} rows in {objects:,} household-day files; "
        f"{stats.invocations} archive invocations, {stats.function_errors} errors"
    )
    return {
        "benchmark": "replay",
        "source": source.name,
        "readings_published": report.readings_published,
        "rows_missing": report.rows_missing,
        "rows_total": report.readings_published + report.rows_missing,
        "rows_rejected": report.rejected,
        "seconds": round(seconds, 2),
        "publish_seconds": round(published_at, 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "archived_rows": archived,
        "archive_objects": objects,
        "archive_invocations": stats.invocations,
        "archive_errors": stats.function_errors,
        "parse_only_seconds": round(parse_only, 2),
        "ratio": round(seconds / parse_only, 2),
        "ratio_definition": "pipeline seconds / parse-only seconds (same file, same run)",
        "goal_seconds": 120,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench replay", description=__doc__)
    parser.add_argument("--source", type=Path, default=FULL_UCI, help="UCI text file (.txt.gz)")
    parser.add_argument("--shards", type=int, default=4, help="readings stream shards")
    args = parser.parse_args(argv)
    if not args.source.exists():
        parser.error(f"{args.source} not found: pass --source (the full UCI file)")
    print(json.dumps(run(args.source, shards=args.shards)))
    return 0
