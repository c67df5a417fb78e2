"""``wattstream run``: everything built so far on real data (what ``make run`` does)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import click

from wattstream.cli.common import console, local_settings, wait_for_interrupt
from wattstream.cli.gateway import start_gateway, stop_all
from wattstream.cli.ingest import (
    put_upload,
    replay_with_progress,
    simulate_with_progress,
    start_ingest_api,
    wait_for_upload_report,
)
from wattstream.cli.stack import build_runner, start_stack
from wattstream.settings import LocalSettings, default_data_slice


@click.command()
@click.option(
    "--data",
    "data_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="UCI household power file (.txt or .txt.gz); default: the shipped slice.",
)
@click.option("--speed", default="600", show_default=True, help="Replay speed factor, or max.")
@click.option("--households", default=1, show_default=True, type=click.IntRange(1, 100_000))
@click.option(
    "--london",
    default=5,
    show_default=True,
    type=click.IntRange(0, 1000),
    help="London households (from the shipped slice) streamed beside the replay; 0: none.",
)
@click.option("--once", is_flag=True, help="Replay at full speed, process everything, exit.")
@click.option(
    "--bus",
    type=click.Choice(["kinesis", "kafka"]),
    default="kinesis",
    show_default=True,
    help="Stream bus: Kinesis on the local stack, or any Kafka-compatible broker.",
)
@click.option(
    "--bootstrap",
    envvar="KAFKA_BOOTSTRAP_SERVERS",
    default=None,
    metavar="HOST:PORT",
    help="Kafka bootstrap servers (with --bus kafka).",
)
@click.pass_context
def run(
    ctx: click.Context,
    data_path: Path | None,
    speed: str,
    households: int,
    london: int,
    once: bool,
    bus: str,
    bootstrap: str | None,
) -> None:
    """Start everything built so far on real data (what `make run` does).

    The local stack comes up from the template; the template's handlers start on the
    local runner (their logs under the state dir); with the shipped slice, the archive is
    first seeded with the real house's daily summaries of the months before it (so the
    monthly forecasts have the history Prophet needs); the ingest API listens on
    WATTSTREAM_INGEST_PORT, the gateway API on WATTSTREAM_API_PORT and the dashboard on
    WATTSTREAM_DASHBOARD_PORT; and the UCI data is replayed onto the readings stream as
    if live, with a progress bar: archive, forecasts and the query store fill up. Beside
    it, on the same clock, a London fleet from the shipped slice (``simulate``'s code
    path, one labelled injected anomaly) and one batch upload of a day of the UCI file, so
    every feature shows (see :mod:`wattstream.demo`).
    """
    settings = local_settings(ctx)
    path = data_path or default_data_slice()
    if bus == "kafka" and not bootstrap:
        raise click.BadParameter("--bus kafka needs --bootstrap HOST:PORT", param_hint="--bus")
    started = time.monotonic()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill`: stop like Ctrl-C
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO lines
    server, description = start_stack(settings, {}, services=not once)
    workers: list[Any] = []
    event_runner: Any = None
    api = None
    gateway: list[Any] = []
    interrupted = False
    stop = threading.Event()
    try:
        if bus == "kafka":
            from wattstream.kafka.topics import kafka_bus_environment
            from wattstream.local import kafka_bus

            assert bootstrap is not None
            kafka_bus.prepare_bus(description, bootstrap, partitions=4)
            event_runner = build_runner(
                settings,
                description,
                kafka_bus.queue_consumers(description),
                environment=kafka_bus_environment(bootstrap),
            )
            workers = kafka_bus.start_workers(description, bootstrap, settings.state_dir)
            console.print(f"Kafka bus at {bootstrap}: {len(workers)} faust workers")
        else:  # --once steps in lockstep: no waiting for fuller batches
            event_runner = build_runner(settings, description, None, batching_windows=not once)
        if not once:
            event_runner.start()
            api = start_ingest_api(description, settings, announce=False)
            gateway = start_gateway(description, settings, dashboard=True, announce=False)
            _print_welcome(
                settings, description, gateway[0].url, households=households, london=london
            )
        start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        if data_path is None:
            _seed_history(description, path, households=households, first_day=start.date())
        upload = _demo_upload(description, settings, path)
        if not once:  # the runner is running: the report comes in seconds
            _print_upload_report(description, upload, timeout=120)
        fleet: Any = None
        if london and not once:  # beside the replay, on its clock
            fleet = _london_fleet(description, london, start=start, speed=speed, stop=stop)
        # --once: full speed in lockstep, each window processed before the next, so the
        # realtime service forecasts every window (a backlog supersedes all but the last)
        lockstep = once and not workers  # (the faust workers consume Kafka on their own)
        step = (lambda: event_runner.drain(timeout_s=600, quiet_rounds=1)) if lockstep else None
        replay_with_progress(
            description,
            path,
            speed="max" if once else speed,
            households=households,
            start=start,
            window_minutes=ONCE_UCI_WINDOW_MINUTES if lockstep else None,
            after_window=step,
        )
        if london and once:
            _london_fleet(description, london, start=start, speed="max", stop=None, step=step)
        if once:
            with console.status("processing: archive, forecasts, accuracy, summaries ..."):
                if workers:
                    kafka_bus.wait_quiet(workers, description)
                event_runner.drain(timeout_s=900)
            _print_pipeline_summary(description, event_runner)
            if workers:
                console.print("\n".join(kafka_bus.summary(workers)))
            _print_upload_report(description, upload, timeout=60)
            _print_feature_summary(description, first_day=start.date())
        else:
            if fleet is not None:
                fleet.join()
            console.print("replay finished; still serving. Ctrl-C stops")
            wait_for_interrupt()
    except KeyboardInterrupt:  # Ctrl-C is how a demo ends: not an error
        interrupted = True
    finally:
        stop.set()
        stop_all(gateway)
        if api is not None:
            api.should_exit = True
        if event_runner is not None:
            event_runner.stop()
        for worker in workers:
            worker.stop()
        server.stop()
        settings.stack_file.unlink(missing_ok=True)
    if not once or interrupted:
        console.print(
            f"stopped after {_duration(time.monotonic() - started)}"
            + (" (Ctrl-C)" if interrupted else "")
            + f": stack, APIs and dashboard are down; logs in {settings.state_dir / 'logs'}"
        )


ONCE_UCI_WINDOW_MINUTES = 360


ONCE_LONDON_WINDOW_MINUTES = 180
"""``run --once`` publishes the UCI replay 6 h and the London fleet 3 h at a time, and lets
the pipeline process each window before the next: a forecast per window and household,
in about a second a window (a 3 h window always ends inside the 4 h demo anomaly)."""


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _print_welcome(
    settings: LocalSettings, description: Any, api: str, *, households: int, london: int
) -> None:
    """One screen: what runs, where to click, how to get a token."""
    from rich.panel import Panel

    host = settings.host
    household = "uci-0001"
    lines = [
        f"[bold]dashboard[/]    http://{host}:{settings.dashboard_port}",
        f"[bold]gateway API[/]  {api}/docs  (try GET {api}/households/{household}/forecast)",
        f"[bold]ingest API[/]   http://{host}:{settings.ingest_port}/docs  (POST /readings)",
        f"[bold]local AWS[/]    {description.endpoint_url}  ({len(description.resources)} "
        "resources: `wattstream status`)",
        "",
        "[bold]a token[/] (from another shell, in the checkout):",
        f"  .venv/bin/wattstream token --household {household}     # one household's view",
        "  .venv/bin/wattstream token --operator                 # the fleet (operator)",
        f'  curl -H "Authorization: Bearer $TOKEN" {api}/households/{household}/forecast',
        "",
        "the demo streams, on one clock:",
        f"  {households} real UCI household(s) (uci-0001 ...): minutes, LSTM forecasts",
        f"  {london} London households (london-00001 ...) from data/london: half-hours, "
        "fleet-model forecasts from their 2nd day; one injected demo anomaly",
        "  one batch upload (upload-demo: a day of the UCI file through the raw bucket)",
        "  Prophet month forecasts (Month tab) from the UCI house's real history; live",
        "  accuracy (operator view) once forecasts meet their actuals",
        "more households: .venv/bin/wattstream simulate --households 50 --days 1",
        f"logs: {settings.state_dir / 'logs'}    Ctrl-C stops everything",
    ]
    console.print(Panel("\n".join(lines), title="wattstream is running", expand=False))


def _demo_upload(description: Any, settings: LocalSettings, path: Path) -> str:
    """Batch processing in the demo: a day of the real UCI file through the raw bucket."""
    from wattstream.demo import UPLOAD_HOUSEHOLD, write_upload_slice

    day = write_upload_slice(path, settings.state_dir / "demo-upload")
    return put_upload(description, day, UPLOAD_HOUSEHOLD, "+01:00")  # the UCI clock


def _print_upload_report(description: Any, key: str, *, timeout: float) -> None:
    report = wait_for_upload_report(description, key, timeout)
    if report is None:
        console.print(f"[red]upload:[/] no batch report for {key} after {timeout:.0f} s")
        return
    shown = {k: v for k, v in report.items() if not isinstance(v, (list, dict))}
    console.print("upload report: " + ", ".join(f"{k}={v}" for k, v in shown.items()))


def _london_fleet(
    description: Any,
    households: int,
    *,
    start: dt.datetime,
    speed: str,
    stop: Any,
    step: Any = None,
) -> Any:
    """The demo's London fleet (``simulate``'s code path) with its labelled anomaly."""
    from services.ingest.core.fleet import plan_fleet
    from wattstream.demo import DEMO_LONDON_DAYS, LONDON_PREFIX, anomaly_label, demo_anomaly
    from wattstream.settings import shipped_london_dir

    # the fleet's first id, as plan_fleet spells it for this many households
    ids = plan_fleet(households, seed=0, lcl_candidates=["-"], id_prefix=LONDON_PREFIX)
    anomaly = demo_anomaly(ids.household_ids[0], start)
    console.print(anomaly_label(anomaly))
    return simulate_with_progress(
        description,
        households,
        seed=0,
        data_dir=shipped_london_dir(),
        uci_path=None,
        start=start,
        days=DEMO_LONDON_DAYS,
        speed=speed,
        uci_share=0.0,
        id_prefix=LONDON_PREFIX,
        anomaly=anomaly,
        stop=stop,
        window_minutes=ONCE_LONDON_WINDOW_MINUTES if step is not None else 1440,
        after_window=step,
    )


def _seed_history(description: Any, path: Path, *, households: int, first_day: Any) -> None:
    """The shipped slice's real history (see :mod:`wattstream.demo_history`), before it."""
    from wattstream.demo_history import seed_demo_history

    with console.status("seeding the archive with the real history before the slice ..."):
        report = seed_demo_history(description, path, households=households, first_day=first_day)
    console.print(
        f"history: {report.written:,} daily summaries of the real UCI house before the "
        f"slice written to the archive ({report.kept:,} already there), ending "
        f"{first_day - dt.timedelta(days=1)}"
    )


def _print_pipeline_summary(description: Any, event_runner: Any) -> None:
    from wattstream.local.server import client_factory

    s3 = client_factory(description.endpoint_url, description.region)("s3")
    bucket = description.outputs["ArchiveBucketName"]
    counts = {}
    for prefix in ("readings/", "summaries/", "quarantine/", "conflicts/"):
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        counts[prefix] = sum(page.get("KeyCount", 0) for page in pages)
    console.print(
        f"archive: {counts['readings/']} household-day Parquet files, "
        f"{counts['summaries/']} daily summaries, {counts['quarantine/']} quarantine objects "
        f"(batches of refused items), {counts['conflicts/']} records of replaced readings"
    )
    for name, stats in event_runner.stats().items():
        console.print(
            f"  {name}: {stats.invocations} invocations, {stats.records} records, "
            f"{stats.function_errors} errors, {stats.sent_to_destination} to the failure queue"
        )
    _print_monthly_summary(s3, description.outputs["ModelsBucketName"])


def _print_monthly_summary(s3: Any, bucket: str) -> None:
    """How many monthly forecasts are Prophet's and how many the fallback's (and why)."""
    from shared.schema import MonthlyForecast

    prophet, fallbacks = 0, dict[str, int]()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="results/monthly/")
    for page in pages:
        for item in page.get("Contents", []):
            if not item["Key"].endswith(".json"):
                continue
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            reason = MonthlyForecast.model_validate_json(body).fallback_reason
            if reason is not None:  # "short_history: 3 usable days ...": by kind
                reason = reason.split(":")[0]
            if reason is None:
                prophet += 1
            else:
                fallbacks[reason] = fallbacks.get(reason, 0) + 1
    console.print(
        f"monthly: {prophet} Prophet forecasts, {sum(fallbacks.values())} fallback"
        + (f" ({', '.join(f'{n}x {r}' for r, n in fallbacks.items())})" if fallbacks else "")
    )


def _print_feature_summary(description: Any, *, first_day: dt.date) -> None:
    """What each feature produced, read back from the stack (``run --once``)."""
    from services.gateway.adapters.dynamo_store import DynamoGatewayStore
    from wattstream.demo import LONDON_PREFIX, FeatureCounts, feature_counts
    from wattstream.local.server import client_factory

    clients = client_factory(description.endpoint_url, description.region)
    store = DynamoGatewayStore(description.outputs["GatewayTableName"], client=clients("dynamodb"))
    ids = [s.household_id for s in store.households()]
    counts = feature_counts(store, ids, first_day - dt.timedelta(days=1))
    uci, fleet = counts.of("uci"), counts.of(LONDON_PREFIX)
    lstm = [h for h in uci if not FeatureCounts.naive(h)]
    served = [h for h in fleet if not FeatureCounts.naive(h)]
    models = sorted({h.model_version for h in served if h.model_version})
    injected = (
        f" ({fleet[0].household_id}, the demo anomaly's: {fleet[0].anomalies})" if fleet else ""
    )
    console.print(
        "features: "
        f"realtime LSTM forecasts: {sum(h.forecasts for h in lstm)} "
        f"({len(lstm)}/{len(uci)} UCI households); "
        f"fleet-model forecasts: {sum(h.forecasts for h in served)} "
        f"({len(served)}/{len(fleet)} London households, latest from {', '.join(models) or '-'}); "
        f"anomalies flagged: {sum(h.anomalies for h in counts.households)}{injected}; "
        f"accuracy: {sum(h.scored_pairs for h in counts.households)} scored forecast-actual "
        f"pairs in {sum(h.scored_pairs > 0 for h in counts.households)} households"
    )
