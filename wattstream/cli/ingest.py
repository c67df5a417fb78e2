"""Commands of the ingest service: ``replay``, ``simulate``, ``upload``, ``serve ingest``.

Each command is a composition root: it configures the process like the template's
function (``use_stack_environment``) and builds the same adapters the Lambda shells use.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from wattstream.cli.common import (
    check_ports_free,
    console,
    function_log,
    load_stack,
    local_settings,
    use_stack_environment,
)
from wattstream.settings import LocalSettings


def stack_publisher_and_quarantine(description: Any) -> tuple[Any, Any]:
    """The ingest function's publisher and quarantine, built against the running stack."""
    from services.ingest.adapters.quarantine import S3SqsQuarantine
    from services.ingest.settings import IngestSettings
    from shared.settings import AwsSettings
    from shared.streams.factory import publisher_for

    use_stack_environment(description, "IngestHttpFunction")
    settings = IngestSettings()  # type: ignore[call-arg]  # from the environment
    aws = AwsSettings()
    publisher = publisher_for(settings.readings_stream_name, aws)
    quarantine = S3SqsQuarantine(
        settings.archive_bucket,
        settings.quarantine_queue_url,
        s3=aws.client("s3"),
        sqs=aws.client("sqs"),
    )
    return publisher, quarantine


def _source_progress(title: str) -> Progress:
    return Progress(
        TextColumn(f"[bold]{title}[/]"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[readings]:,} readings, {task.fields[rejected]:,} rejected"),
        TextColumn("lag {task.fields[lag]:.1f}s"),
        TimeElapsedColumn(),
        console=console,
    )


def _print_source_report(report: Any) -> None:
    console.print(
        f"published {report.readings_published:,} readings of {report.households:,} "
        f"households in {report.records:,} records ({report.bytes:,} bytes) in "
        f"{report.wall_s:.1f} s; {report.rows_missing:,} missing rows reported (never "
        f"invented), {report.rows_malformed:,} malformed, {report.rejected:,} rejected"
        + (f" {dict(report.rejected_by_code)}" if report.rejected else "")
    )


def _run_source(title: str, run: Any, after_window: Any = None) -> Any:
    """Run a source with a progress bar; ``after_window()`` runs after each published window
    (``run --once`` lets the pipeline process each window before the next: lockstep)."""
    with _source_progress(title) as progress:
        task = progress.add_task(title, total=1.0, readings=0, rejected=0, lag=0.0)

        def update(report: Any) -> None:
            if after_window is not None:
                after_window()
            progress.update(
                task,
                completed=report.fraction,
                readings=report.readings_published,
                rejected=report.rejected,
                lag=report.lag_s,
            )

        report = run(update)
        progress.update(task, completed=1.0)
    _print_source_report(report)
    return report


def replay_id_prefix(description: Any, households: int, requested: str | None) -> str:
    """The replay's household id prefix: ``requested``, else the first one whose households
    have no data in the gateway's store yet (replays never mix into a running household)."""
    from services.gateway.adapters.dynamo_store import DynamoGatewayStore
    from services.ingest.core.replay import fresh_id_prefix
    from wattstream.local.server import client_factory

    if requested is not None:
        return requested
    store = DynamoGatewayStore(
        description.outputs["GatewayTableName"],
        client=client_factory(description.endpoint_url, description.region)("dynamodb"),
    )

    def has_data(household_id: str) -> bool:
        summary = store.household(household_id)
        return summary is not None and summary.last_reading_at is not None

    return fresh_id_prefix(households, has_data)


def replay_with_progress(
    description: Any,
    path: Path,
    *,
    speed: str,
    households: int,
    start: str | dt.datetime = "now",
    seed: int = 0,
    flush_every_s: float | None = None,
    id_prefix: str = "uci",
    window_minutes: int | None = None,
    after_window: Any = None,
) -> Any:
    """Replay a UCI file onto the stack's readings stream with a progress bar.

    ``window_minutes`` (unpaced): minutes per window and record, default a day;
    ``after_window``: see :func:`_run_source`.
    """
    from services.ingest.core.replay import parse_speed
    from services.ingest.sources import DEFAULT_FLUSH_EVERY_S, ReplayOptions, run_replay
    from shared.publishing import DEFAULT_READINGS_PER_RECORD

    try:
        speed_factor = parse_speed(speed)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--speed") from error
    publisher, quarantine = stack_publisher_and_quarantine(description)
    return _run_source(
        f"replay {path.name}",
        lambda update: run_replay(
            path,
            publisher,
            ReplayOptions(
                speed=speed_factor,
                households=households,
                start=start,  # type: ignore[arg-type]
                seed=seed,
                id_prefix=id_prefix,
                flush_every_s=flush_every_s or DEFAULT_FLUSH_EVERY_S,
                readings_per_record=window_minutes or DEFAULT_READINGS_PER_RECORD,
            ),
            quarantine=quarantine,
            on_progress=update,
        ),
        after_window,
    )


def start_ingest_api(description: Any, settings: LocalSettings, *, announce: bool = True) -> Any:
    """Serve the ingest HTTP API (the Lambda's FastAPI app) in a background thread."""
    import uvicorn

    from services.ingest.shells.http_app import create_app
    from services.ingest.shells.http_lambda import deps_from_environment

    use_stack_environment(description, "IngestHttpFunction")
    with function_log(settings.state_dir / "logs", "IngestApi"):
        app = create_app(deps_from_environment())
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.ingest_port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="ingest-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise click.ClickException(
            f"the ingest API could not listen on {settings.host}:{settings.ingest_port}; "
            "set WATTSTREAM_INGEST_PORT"
        )
    if announce:
        console.print(
            f"ingest API on http://{settings.host}:{settings.ingest_port} "
            "(POST /readings, OpenAPI at /docs)"
        )
    return server


@click.command()
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="UCI household power file (.txt or .txt.gz).",
)
@click.option(
    "--speed",
    default="600",
    show_default=True,
    help="Data minutes per wall minute (600 = 10 h of data per minute), or max.",
)
@click.option(
    "--households",
    default=1,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Replay as N households (seeded variations of the real series).",
)
@click.option(
    "--start",
    type=click.Choice(["now", "original"]),
    default="now",
    show_default=True,
    help="now: shift the first reading to the current time; original: file times.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the household variations.")
@click.option(
    "--flush",
    "flush_every_s",
    type=click.FloatRange(min=0.01),
    default=None,
    help="Seconds between records of one household (default 1).",
)
@click.option(
    "--id-prefix",
    default=None,
    metavar="PREFIX",
    help="Household ids PREFIX-0001 ...; default: uci, or uci2, uci3 ... when those "
    "households already have data (a replay never mixes into a running household).",
)
@click.pass_context
def replay(
    ctx: click.Context,
    path: Path,
    speed: str,
    households: int,
    start: str,
    seed: int,
    flush_every_s: float | None,
    id_prefix: str | None,
) -> None:
    """Stream a UCI file to the running local stack as if live (time-shifted, sped up)."""
    from services.ingest.core.replay import replay_household_ids

    description = load_stack(local_settings(ctx))
    prefix = replay_id_prefix(description, households, id_prefix)
    ids = replay_household_ids(households, prefix)
    fresh = id_prefix is None and prefix != "uci"
    console.print(
        f"households {ids[0]}"
        + (f" .. {ids[-1]}" if len(ids) > 1 else "")
        + (" (uci-0001 already has data: fresh ids; --id-prefix uci adds to it)" if fresh else "")
    )
    replay_with_progress(
        description,
        path,
        id_prefix=prefix,
        speed=speed,
        households=households,
        start=start,
        seed=seed,
        flush_every_s=flush_every_s,
    )


def _fleet_data(data_dir: Path | None) -> tuple[Path, Path | None]:
    """(London folder, UCI file) for ``simulate``: the one asked for, else the full data
    set beside the checkout, else the slice shipped in data/ (a fresh clone has no other)."""
    from services.ingest.sources import LCL_DAILY_DIR
    from wattstream.settings import default_data_slice, shared_data_dir, shipped_london_dir

    if data_dir is not None:
        if not (data_dir / LCL_DAILY_DIR).is_dir():
            raise click.BadParameter(f"no {LCL_DAILY_DIR}/ in {data_dir}", param_hint="--data-dir")
        full = data_dir / "uci_household_power_consumption.txt.gz"
        return data_dir, full if full.exists() else None
    shared = shared_data_dir()
    if (shared / LCL_DAILY_DIR).is_dir():
        full = shared / "uci_household_power_consumption.txt.gz"
        return shared, full if full.exists() else default_data_slice()
    return shipped_london_dir(), default_data_slice()


@click.command()
@click.option("--households", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--days", default=1.0, show_default=True, type=click.FloatRange(min=0.0, min_open=True)
)
@click.option(
    "--start",
    default="now",
    show_default=True,
    help="now, or an ISO date/time (UTC) for the first simulated reading.",
)
@click.option("--speed", default="max", show_default=True, help="Speed factor, or max.")
@click.option(
    "--data-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder with lcl_daily_dataset/ and the UCI file (default: ../shared/data beside "
    "the checkout when present, else the London slice shipped in data/london).",
)
@click.pass_context
def simulate(
    ctx: click.Context,
    households: int,
    seed: int,
    days: float,
    start: str,
    speed: str,
    data_dir: Path | None,
) -> None:
    """Publish a seeded fleet of households built from real UCI and London profiles."""
    description = load_stack(local_settings(ctx))
    data, uci = _fleet_data(data_dir)
    console.print(f"real profiles from {data} (London) and {uci.name if uci else 'no'} (UCI)")
    begin: dt.datetime | str = start
    if start != "now":
        try:
            begin = dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--start") from error
    simulate_with_progress(
        description,
        households,
        seed=seed,
        data_dir=data,
        uci_path=uci,
        start=begin,
        days=days,
        speed=speed,
    )


def simulate_with_progress(
    description: Any,
    households: int,
    *,
    seed: int,
    data_dir: Path | None,
    uci_path: Path | None,
    start: dt.datetime | str,
    days: float,
    speed: str,
    uci_share: float = 0.2,
    id_prefix: str = "sim",
    anomaly: Any = None,
    stop: threading.Event | None = None,
    window_minutes: int = 1440,
    after_window: Any = None,
) -> Any:
    """Publish a seeded fleet (``wattstream simulate``; ``run`` adds a London fleet this way).

    With a progress bar and its report (returned); with ``stop``, in a background thread
    (returned) that prints its report when done and ends quietly once ``stop`` is set.
    ``window_minutes`` bounds a window; ``after_window``: see :func:`_run_source`.
    """
    from services.ingest.core.replay import parse_speed
    from services.ingest.sources import load_fleet, run_fleet

    try:
        speed_factor = parse_speed(speed)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--speed") from error
    with console.status(f"loading real profiles for {households:,} households ..."):
        fleet, sources = load_fleet(
            households,
            seed=seed,
            data_dir=data_dir,
            uci_path=uci_path,
            uci_share=uci_share,
            id_prefix=id_prefix,
        )
    publisher, quarantine = stack_publisher_and_quarantine(description)

    def publish(update: Any, sleep: Any = time.sleep) -> Any:
        return run_fleet(
            fleet,
            sources,
            publisher,
            start=start,
            days=days,
            speed=speed_factor,
            quarantine=quarantine,
            on_progress=update,
            anomaly=anomaly,
            sleep=sleep,
            max_window_minutes=window_minutes,
        )

    if stop is None:
        return _run_source(f"simulate {households:,} households", publish, after_window)

    def quiet_sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise _Stopped

    def background() -> None:
        try:
            report = publish(None, quiet_sleep)
        except _Stopped:
            return
        except Exception as error:  # the stack went down under it: one line, no traceback
            if not stop.is_set():
                console.print(f"[red]fleet simulation stopped:[/] {error}")
            return
        _print_source_report(report)

    thread = threading.Thread(target=background, name="simulate", daemon=True)
    thread.start()
    return thread


class _Stopped(Exception):
    """A background simulation was asked to stop."""


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--household",
    default=None,
    help="Household id (default: the upload handler's default for the file).",
)
@click.option(
    "--utc-offset",
    "utc_offset",
    required=True,
    help="UTC offset of the file's naive times: +HH:MM / -HH:MM / Z, or 'uci' for the UCI "
    "Sceaux file's fixed UTC+01:00. Stored as the object's utc-offset metadata.",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait for the batch handler's report (needs `wattstream run` or `runner`).",
)
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait.")
@click.pass_context
def upload(
    ctx: click.Context,
    path: Path,
    household: str | None,
    utc_offset: str,
    wait: bool,
    timeout: float,
) -> None:
    """Batch processing: put a historical file (UCI format) in the raw bucket and wait for
    its report. UCI rows carry no time zone: --utc-offset says how to read them."""
    from services.ingest.core.intake import household_rejection
    from shared.uci import format_utc_offset, parse_utc_offset

    if household is not None and (bad := household_rejection(household)) is not None:
        raise click.BadParameter(bad.reason, param_hint="--household")
    try:
        offset = format_utc_offset(parse_utc_offset(utc_offset))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--utc-offset") from error
    description = load_stack(local_settings(ctx))
    key = put_upload(description, path, household, offset)
    if not wait:
        return
    body = wait_for_upload_report(description, key, timeout)
    if body is None:
        raise click.ClickException(
            f"no report for {key} after {timeout:.0f} s: is the runner running "
            "(`wattstream run` or `wattstream runner`)?"
        )
    console.print_json(json.dumps(body))


def put_upload(description: Any, path: Path, household: str | None, offset: str) -> str:
    """Put ``path`` under ``uploads/`` of the raw bucket with its UTC offset; returns the key."""
    from services.ingest.shells.batch_lambda import UTC_OFFSET_METADATA
    from wattstream.local.server import client_factory

    s3 = client_factory(description.endpoint_url, description.region)("s3")
    bucket = description.outputs["RawBucketName"]
    key = f"uploads/{household}/{path.name}" if household else f"uploads/{path.name}"
    with console.status(f"uploading {path.name} ({path.stat().st_size:,} bytes) ..."):
        s3.upload_file(
            str(path), bucket, key, ExtraArgs={"Metadata": {UTC_OFFSET_METADATA: offset}}
        )
    console.print(f"uploaded to s3://{bucket}/{key}")
    return key


def wait_for_upload_report(description: Any, key: str, timeout: float) -> dict[str, Any] | None:
    """The batch handler's report of upload ``key`` (JSON), or ``None`` after ``timeout`` s."""
    from services.ingest.shells.batch_lambda import report_key
    from wattstream.local.server import client_factory

    s3 = client_factory(description.endpoint_url, description.region)("s3")
    bucket = description.outputs["RawBucketName"]
    deadline = time.monotonic() + timeout
    with console.status("waiting for the batch handler's report ..."):
        while time.monotonic() < deadline:
            try:
                body = s3.get_object(Bucket=bucket, Key=report_key(key))["Body"].read()
            except s3.exceptions.NoSuchKey:
                time.sleep(0.5)
                continue
            report: dict[str, Any] = json.loads(body)
            return report
    return None


@click.command()
@click.pass_context
def serve_ingest(ctx: click.Context) -> None:
    """The ingest API (POST /readings) on WATTSTREAM_INGEST_PORT, until Ctrl-C."""
    import uvicorn

    from services.ingest.shells.http_app import create_app
    from services.ingest.shells.http_lambda import deps_from_environment

    settings = local_settings(ctx)
    check_ports_free(settings, "ingest_port")
    use_stack_environment(load_stack(settings), "IngestHttpFunction")
    uvicorn.run(create_app(deps_from_environment()), host=settings.host, port=settings.ingest_port)
