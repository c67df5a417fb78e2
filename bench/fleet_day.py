"""Fleet-day benchmark: one simulated day of the London fleet through the whole local pipeline.

``python -m bench fleet-day [--households N] [--date YYYY-MM-DD] [--seed S]
[--window-minutes M] [--speed max|X] [--moto subprocess|thread]``

**Scenario.** ``N`` London households (default: all 5,566 of ``lcl_daily_dataset``), each
a real household's daily kWh spread over 48 half-hours by a real intraday profile
(``services.ingest.core.fleet``, the ``wattstream simulate`` generator), for one UTC day:
48 readings a household, about 267,000 for the fleet. The ingest side
(:func:`services.ingest.sources.run_fleet`: validate, frame, publish) sends the fleet's
readings one window at a time (``--speed max``: as fast as ingest can): by default one
window of the whole day, i.e. one record of 48 readings per household, as
``wattstream simulate --speed max`` frames it; ``--window-minutes 30`` sends every
half-hour on its own, as live meters report it (48 times the records, and 48 times the
per-record work in every consumer).
Every template function with an event source runs on the local event-source runner
beside it, from ``deploy/template.yaml`` on a moto server: ``ArchiveFunction`` (Parquet
per household-day and daily summaries), ``RealtimeFunction`` (forecasts),
``GatewayReadingsFunction`` and ``GatewayForecastsFunction`` (the query store),
``MonthlyFunction`` (rest-of-month forecasts from the day's summaries, via the archive's
S3 events) and ``GatewayResultsFunction`` (month views). The clock stops when the runner
has nothing left to do.

``--moto subprocess`` (default) serves the local AWS from its own process, as AWS is
not in a Lambda's process: the stack's request handling gets its own core instead of
sharing the pipeline's interpreter lock (``thread`` keeps the embedded server thread of
the other benches, for comparison).

**Report.** ``seconds`` (first publish -> drained), ``speed_vs_real_time`` (86,400 /
seconds), per stage (``stages``): records, busy seconds (in the handler), active span
(first call -> last return), throughput in the stage's own unit (readings/s, forecasts/s,
query-store items/s, monthly forecasts/s) and the maximum lag (the oldest record of a
call: now - its arrival on the stream or queue, i.e. the iterator age Lambda reports),
``max_lag_s`` over all stages. **Accounting**: every published reading is looked up in the
archive (Parquet rows of every household-day) and in the query store (minutes covered per
household-day): ``lost`` = published readings missing from either, ``duplicated`` = rows
stored more than once; forecasts published vs stored; households with a monthly forecast.
The last line is one JSON object.
"""

from __future__ import annotations

# ruff: noqa: E402  (the environment below must be set before numpy is imported)
import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import datetime as dt
import importlib
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from services.ingest.sources import load_fleet, run_fleet
from shared.archive_parquet import decode_day
from shared.streams.kinesis import KinesisPublisher
from shared.streams.ports import PublishReport, StreamPublisher, StreamRecord
from wattstream.local.net import free_port

ROOT: Final = Path(__file__).resolve().parents[1]
TEMPLATE: Final = ROOT / "deploy" / "template.yaml"
DATA_DIR: Final = ROOT.parent / "shared" / "data"
REGION: Final = "us-east-1"
DAY_S: Final = 86_400
GOAL_SECONDS: Final = 600.0
DEFAULT_DATE: Final = dt.date(2013, 6, 12)
ALL_HOUSEHOLDS: Final = 5_566
HALF_HOUR_MINUTES: Final = 30
DAY_MINUTES: Final = 1440
#: The interpreter's thread switch interval in the local AWS process and in this one
#: (Python's default: 5 ms). Both are many threads that mostly wait on sockets beside a
#: few that compute; at 5 ms a thread whose socket answered waits up to 5 ms for the
#: interpreter lock, at every send and receive: moto answered small writes 2-3x faster
#: beside heavy requests at 0.5 ms. On AWS every function is its own process.
SWITCH_INTERVAL_S: Final = 0.0005

#: Stage name -> (template function, unit of its throughput).
STAGES: Final = {
    "archive": ("ArchiveFunction", "readings"),
    "realtime": ("RealtimeFunction", "readings"),
    "gateway_readings": ("GatewayReadingsFunction", "readings"),
    "gateway_forecasts": ("GatewayForecastsFunction", "forecasts"),
    "monthly": ("MonthlyFunction", "summary events"),
    "gateway_results": ("GatewayResultsFunction", "monthly results"),
}


# ------------------------------------------------------------------------ measurement


@dataclass
class StageClock:
    """What one function did, measured around its handler (inside the runner's call)."""

    calls: int = 0
    records: int = 0
    busy_s: float = 0.0
    first_start: float | None = None
    last_end: float | None = None
    max_lag_s: float = 0.0
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def span_s(self) -> float:
        if self.first_start is None or self.last_end is None:
            return 0.0
        return self.last_end - self.first_start


def _arrivals(event: dict[str, Any]) -> list[float]:
    """Epoch seconds each record of a Kinesis or SQS event reached its source."""
    stamps = []
    for record in event.get("Records", []):
        if "kinesis" in record:
            stamps.append(float(record["kinesis"]["approximateArrivalTimestamp"]))
        elif "SentTimestamp" in record.get("attributes", {}):
            stamps.append(int(record["attributes"]["SentTimestamp"]) / 1000)
    return stamps


class TimedEntry:
    """A shell entry point (``bind(environment) -> handler``) whose bound handlers are
    timed: the runner still binds each function with its own environment."""

    def __init__(self, entry: Any, clock_of: Callable[[], StageClock]) -> None:
        self.entry, self.clock_of = entry, clock_of

    def bind(self, environment: Any) -> Callable[..., Any]:
        return timed(self.entry.bind(environment), self.clock_of)

    def reset(self) -> None:
        self.entry.reset()


def timed(handler: Any, clock_of: Callable[[], StageClock]) -> Any:
    """``handler`` with its calls, records, busy time and lag counted in ``clock_of()``
    (looked up per call, so the warm-up and the measured day count apart)."""
    if hasattr(handler, "bind"):
        return TimedEntry(handler, clock_of)

    def measured(event: dict[str, Any], context: Any) -> Any:
        started, wall = time.perf_counter(), time.time()
        arrivals = _arrivals(event)
        clock = clock_of()
        with clock.lock:
            clock.in_flight += 1
        try:
            return handler(event, context)
        finally:
            ended = time.perf_counter()
            with clock.lock:
                clock.in_flight -= 1
                clock.calls += 1
                clock.records += len(event.get("Records", []))
                clock.busy_s += ended - started
                # Calls of one function overlap (SQS mappings invoke concurrently).
                clock.first_start = (
                    started if clock.first_start is None else min(clock.first_start, started)
                )
                clock.last_end = ended if clock.last_end is None else max(clock.last_end, ended)
                if arrivals:
                    clock.max_lag_s = max(clock.max_lag_s, wall - min(arrivals))

    return measured


class CountingPublisher:
    """The ingest publisher, counting records (the readings stream's input)."""

    def __init__(self, inner: StreamPublisher) -> None:
        self.inner = inner
        self.records = 0
        self.seconds = 0.0

    def publish(self, records: Sequence[StreamRecord]) -> PublishReport:
        started = time.perf_counter()
        result = self.inner.publish(records)
        self.seconds += time.perf_counter() - started
        self.records += len(records)
        return result


class StackSampler:
    """A small sampling profiler (py-spy is not installed here): every ``interval_s`` it
    looks at every thread's Python stack and counts each function once per sample
    (inclusive time). Cheap enough to leave on; it sees the runner's threads and the
    handlers' worker pools, which ``cProfile`` (one thread) would miss."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.samples = 0
        self.counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval_s):
            for ident, frame in sys._current_frames().items():
                leaf = frame.f_code
                if ident == me or (
                    leaf.co_filename.endswith(("threading.py", "queue.py"))
                    and leaf.co_name in ("wait", "get", "_wait_for_tstate_lock")
                ):
                    continue  # this thread, or one that is idle
                seen: set[str] = set()
                while frame is not None:
                    code = frame.f_code
                    seen.add(f"{code.co_name} ({code.co_filename}:{code.co_firstlineno})")
                    frame = frame.f_back  # type: ignore[assignment]
                if any("site-packages" not in name and "/bench/" not in name for name in seen):
                    self.samples += 1
                    for name in seen:
                        self.counts[name] = self.counts.get(name, 0) + 1

    def __enter__(self) -> StackSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self, top: int = 60) -> str:
        ranked = sorted(self.counts.items(), key=lambda item: -item[1])[:top]
        lines = [f"{self.samples} thread samples every {self.interval_s * 1000:.0f} ms"]
        lines += [f"{count / max(self.samples, 1):6.1%}  {name}" for name, count in ranked]
        return "\n".join(lines)


def _caller() -> str:
    """The project function nearest to a request on the stack (``module:function``)."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if str(ROOT) in name and "/bench/" not in name:
            return f"{Path(name).stem}:{frame.f_code.co_name}"
        frame = frame.f_back  # type: ignore[assignment]
    return "?"


class RequestCounter:
    """Every AWS request this process makes, counted per ``service.Operation`` with the
    seconds spent waiting for it (botocore's endpoint, patched while the block runs):
    the local AWS is one process, so request counts are what a stage costs it."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._original: Any = None

    def __enter__(self) -> RequestCounter:
        from botocore.endpoint import Endpoint

        original = self._original = Endpoint.make_request
        counter = self

        def make_request(endpoint: Any, operation_model: Any, request_dict: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(endpoint, operation_model, request_dict)
            finally:
                name = f"{operation_model.service_model.endpoint_prefix}.{operation_model.name}"
                name += f" <- {_caller()}"
                with counter._lock:
                    row = counter.calls.setdefault(name, [0, 0.0])
                    row[0] += 1
                    row[1] += time.perf_counter() - started

        Endpoint.make_request = make_request  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        from botocore.endpoint import Endpoint

        Endpoint.make_request = self._original  # type: ignore[method-assign]

    def report(self) -> str:
        total = sum(int(n) for n, _ in self.calls.values())
        lines = [f"{total:,} AWS requests (count, mean ms, operation)"]
        for name, (count, seconds) in sorted(self.calls.items(), key=lambda kv: -kv[1][0]):
            lines.append(f"{int(count):>9,} {seconds / count * 1000:8.1f}  {name}")
        return "\n".join(lines)


# ------------------------------------------------------------------------ local stack


def process_cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) a process has used: this one when ``pid`` is None.

    Read from ``/proc/<pid>/stat`` for another process (Linux), so the bench can say how
    the 2 cores were shared between the local AWS and the pipeline."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class LocalAws:
    """A running local AWS: its endpoint and, when it has its own process, that pid."""

    endpoint: str
    pid: int | None = None

    def cpu_s(self) -> float | None:
        """CPU seconds the local AWS process used so far (None when it is a thread here)."""
        return process_cpu_s(self.pid) if self.pid is not None else None


@contextmanager
def local_aws(mode: str, log_file: Path) -> Iterator[LocalAws]:
    """A moto server: in its own process (``subprocess``) or as a thread of this one.

    The server's own errors (a request it failed with 500) go to ``log_file``."""
    from wattstream.local.server import EmbeddedAws, ensure_local_credentials

    if mode == "thread":
        with EmbeddedAws(log_file=log_file) as aws:
            yield LocalAws(aws.endpoint_url)
        return
    ensure_local_credentials()
    port = free_port()
    code = (
        "import os, sys\n"
        f"sys.setswitchinterval({SWITCH_INTERVAL_S})\n"
        "from wattstream.local.server import EmbeddedAws\n"
        "aws = EmbeddedAws(port=int(sys.argv[1])); aws.start()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()  # until the parent closes it, or dies\n"
        "aws.stop()\n"
        "os._exit(0)  # the server's threads must not keep this process alive\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log_file.open("a"),
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the moto server process did not start")
        yield LocalAws(f"http://127.0.0.1:{port}", process.pid)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _server_errors(log_file: Path) -> int:
    """Requests the local AWS answered with an internal error (its log's tracebacks)."""
    if not log_file.exists():
        return 0
    return log_file.read_text(errors="replace").count("Error on request")


def _handler_of(spec: Any) -> Callable[..., Any]:
    module, _, name = spec.handler.rpartition(".")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


# ------------------------------------------------------------------------ accounting


@dataclass
class Accounting:
    """Published readings against what the archive and the query store hold."""

    archive_rows: int = 0
    archive_objects: int = 0
    archive_missing: int = 0
    archive_duplicated: int = 0
    archive_unexpected: int = 0
    store_readings: int = 0
    store_missing: int = 0
    summaries: int = 0
    forecasts_published: int = 0
    forecasts_stored: int = 0
    monthly_results: int = 0
    monthly_fallbacks: dict[str, int] = field(default_factory=dict)


def _list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _stream_records(kinesis: Any, stream: str) -> int:
    total = 0
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            reply = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            total += len(reply["Records"])
            if not reply["Records"] and reply.get("MillisBehindLatest", 0) == 0:
                break
            iterator = reply.get("NextShardIterator")
    return total


def account(
    clients: Callable[[str], Any],
    outputs: dict[str, str],
    expected: dict[str, set[int]],
    day: dt.date,
) -> Accounting:
    """Read everything back: every expected reading must be stored exactly once."""
    from services.gateway.adapters.dynamo_store import DynamoGatewayStore
    from shared.archive_layout import readings_key
    from shared.schema import MonthlyForecast

    s3 = clients("s3")
    result = Accounting()
    bucket = outputs["ArchiveBucketName"]
    keys = set(_list_keys(s3, bucket, "readings/"))
    result.archive_objects = len(keys)
    result.summaries = len(_list_keys(s3, bucket, "summaries/"))
    for household, stamps in expected.items():
        key = readings_key(household, day)
        if key not in keys:
            result.archive_missing += len(stamps)
            continue
        rows = decode_day(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        got = rows.timestamps_us.tolist()
        result.archive_rows += len(got)
        unique = set(got)
        result.archive_duplicated += len(got) - len(unique)
        result.archive_missing += len(stamps - unique)
        result.archive_unexpected += len(unique - stamps)

    store = DynamoGatewayStore(outputs["GatewayTableName"], client=clients("dynamodb"))
    day_start_us = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1e6)
    for household, stamps in expected.items():
        minutes = store.days(household, [day], consistent=True).get(day)
        covered = set()
        if minutes is not None:
            filled = np.isfinite(minutes)
            for stamp in stamps:
                first = (stamp - day_start_us) // 60_000_000
                if filled[first : first + HALF_HOUR_MINUTES].all():
                    covered.add(stamp)
        result.store_readings += len(covered)
        result.store_missing += len(stamps) - len(covered)
        if store.latest_forecast(household) is not None:
            result.forecasts_stored += 1

    result.forecasts_published = _stream_records(clients("kinesis"), outputs["ForecastsStreamName"])
    models = outputs["ModelsBucketName"]
    for key in _list_keys(s3, models, "results/monthly/"):
        if not key.endswith(".json"):
            continue
        body = s3.get_object(Bucket=models, Key=key)["Body"].read()
        result.monthly_results += 1
        reason = MonthlyForecast.model_validate_json(body).fallback_reason
        kind = "prophet" if reason is None else reason.split(":")[0]
        result.monthly_fallbacks[kind] = result.monthly_fallbacks.get(kind, 0) + 1
    return result


# ------------------------------------------------------------------------ the run


def _console(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def heartbeat(clocks: dict[str, StageClock], since: float, what: str) -> Iterator[None]:
    """Records consumed per stage on the console every 10 s while the block runs."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(10):
            counts = {stage: clock.records for stage, clock in clocks.items() if clock.records}
            _console(f"  {time.perf_counter() - since:6.1f} s ({what}): consumed {counts}")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def settle(
    runner: Any, clocks: dict[str, StageClock], *, timeout_s: float, quiet_s: float = 2.0
) -> None:
    """Let the runner's threads (every function concurrently, as Lambda runs them) work
    until the pipeline is quiet: no call in flight, nothing buffered and no call ended
    for ``quiet_s`` (every poller has polled its source empty many times by then); then
    stop them and drain what is left, if anything, round by round.

    ``stop`` + ``drain`` alone would run the whole backlog on ONE thread, one function
    after another: the day would measure the runner's sequential mode, not the pipeline.
    """
    deadline = time.monotonic() + timeout_s
    quiet_since: float | None = None
    last = None
    while time.monotonic() < deadline:
        time.sleep(0.1)
        state = tuple((c.calls, c.in_flight) for c in clocks.values())
        try:
            buffered = any(p.buffered for p in runner.pollers)
        except RuntimeError:  # a poller added a shard while we looked: look again
            buffered = True
        busy = buffered or any(c.in_flight for c in clocks.values())
        if busy or state != last:
            quiet_since, last = None, state
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            break
    runner.stop(timeout_s=timeout_s)  # finish calls in flight
    runner.drain(timeout_s=max(1.0, deadline - time.monotonic()))


def expected_readings(
    fleet: Any, sources: Any, *, day: dt.date, noise_sigma: float = 0.2
) -> dict[str, set[int]]:
    """Every valid (household -> timestamps) of the day, generated again (deterministic).

    Outside the timed run: the simulator is seeded, so the same fleet and day give the
    same readings that ingest published (their count is checked against its report).
    """
    from services.ingest.core.fleet import FleetModel, check_slice

    start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1e6)
    end = start + DAY_S * 1_000_000
    expected: dict[str, set[int]] = {}
    for part in FleetModel(fleet, sources, noise_sigma=noise_sigma).window(start, end):
        for batch in check_slice(part, now_us=end).batches:
            expected.setdefault(batch.household_id, set()).update(batch.timestamps_us.tolist())
    return expected


def run(
    *,
    households: int,
    day: dt.date,
    seed: int,
    window_minutes: int,
    speed: str,
    moto: str,
    state_dir: Path,
    warmup_days: int = 1,
    profile: Path | None = None,
    data_dir: Path = DATA_DIR,
    drain_timeout_s: float = 3600.0,
) -> dict[str, Any]:
    from services.ingest.adapters.quarantine import S3SqsQuarantine
    from wattstream.local.runner import EventSourceRunner
    from wattstream.local.server import client_factory, provision

    started_load = time.perf_counter()
    _console(f"loading real profiles for {households:,} London households ...")
    fleet, sources = load_fleet(
        households, seed=seed, data_dir=data_dir, uci_path=None, uci_share=0.0, id_prefix="lcl"
    )
    load_s = time.perf_counter() - started_load
    _console(f"  loaded in {load_s:.1f} s")
    moto_log = state_dir / "moto.log"
    with local_aws(moto, moto_log) as aws:
        endpoint = aws.endpoint
        stack = provision(
            TEMPLATE, endpoint_url=endpoint, region=REGION, stack_name="bench-fleet-day"
        )
        clients = client_factory(endpoint, REGION)
        clocks = {stage: StageClock() for stage in STAGES}
        by_function = {function: stage for stage, (function, _) in STAGES.items()}
        handlers = {
            function: timed(
                _handler_of(stack.functions[function]), lambda stage=stage: clocks[stage]
            )
            for function, stage in by_function.items()
            if function in stack.functions
        }

        def new_runner() -> EventSourceRunner:
            """A runner over the same checkpoints (a second one resumes where the first
            stopped: the warm-up's and the measured day's)."""
            return EventSourceRunner(
                stack,
                clients=clients,
                checkpoint_path=state_dir / "checkpoints.json",
                handlers=handlers,
                functions=set(handlers),
                log_dir=state_dir / "logs",
                # An idle source is polled once a second, as Lambda polls an idle shard:
                # at 20 a second the empty polls were a third of the local AWS's
                # requests, at 4 (and an SQS mapping's pollers each polling) still ~15 %.
                idle_sleep_s=1.0,
            )

        publisher = CountingPublisher(
            KinesisPublisher(stack.outputs["ReadingsStreamName"], clients("kinesis"))
        )
        quarantine = S3SqsQuarantine(
            stack.outputs["ArchiveBucketName"],
            stack.outputs["QuarantineQueueUrl"],
            s3=clients("s3"),
            sqs=clients("sqs"),
        )
        for back in range(warmup_days, 0, -1):
            warm_day = day - dt.timedelta(days=back)
            _console(f"warm-up: {warm_day} (realtime needs a known day before it forecasts)")
            warm_started = time.perf_counter()
            warm_runner = new_runner()
            warm_runner.start()
            warm = run_fleet(
                fleet,
                sources,
                publisher,
                start=dt.datetime.combine(warm_day, dt.time(), dt.UTC),
                days=1.0,
                speed="max",
                quarantine=quarantine,
                max_window_minutes=24 * 60,  # one record per household: quick, same state
            )
            with heartbeat(clocks, warm_started, "warm-up"):
                settle(warm_runner, clocks, timeout_s=drain_timeout_s)
            _console(
                f"  {warm.readings_published:,} readings through the pipeline in "
                f"{time.perf_counter() - warm_started:.1f} s (not timed)"
            )
        clocks.update({stage: StageClock() for stage in STAGES})
        publisher.records, publisher.seconds = 0, 0.0
        _console(f"the measured day: {day}")
        sampler = StackSampler().__enter__() if profile is not None else None
        requests = RequestCounter().__enter__() if profile is not None else None
        runner = new_runner()
        cpu_before = (aws.cpu_s(), process_cpu_s())
        started = time.perf_counter()
        runner.start()
        last = [started]

        def progress(report: Any) -> None:
            now = time.perf_counter()
            if now - last[0] >= 5 or report.simulated_until >= report.simulated_end:
                last[0] = now
                done = {s: c.records for s, c in clocks.items() if c.records}
                _console(
                    f"  {now - started:6.1f} s: ingest at {report.simulated_until:%H:%M} UTC, "
                    f"{report.readings_published:,} readings published; consumed: {done}"
                )

        report = run_fleet(
            fleet,
            sources,
            publisher,
            start=dt.datetime.combine(day, dt.time(), dt.UTC),
            days=1.0,
            speed=speed,
            quarantine=quarantine,
            on_progress=progress,
            max_window_minutes=window_minutes,
        )
        published_s = time.perf_counter() - started
        _console(f"ingest done in {published_s:.1f} s; waiting for the pipeline to drain ...")
        with heartbeat(clocks, started, "draining"):
            settle(runner, clocks, timeout_s=drain_timeout_s)
        # The day is through when the last call returned (not when the quiet wait ended).
        ends = [c.last_end for c in clocks.values() if c.last_end is not None]
        seconds = max([*ends, published_s + started]) - started
        cpu_after = (aws.cpu_s(), process_cpu_s())
        if sampler is not None:
            sampler.__exit__()
            assert profile is not None
            assert requests is not None
            requests.__exit__()
            profile.write_text(requests.report() + "\n\n" + sampler.report())
            _console(f"stack samples of the measured day: {profile}")
        stats = runner.stats()
        _console(f"drained after {seconds:.1f} s; reading everything back ...")
        expected = expected_readings(fleet, sources, day=day)
        accounting = account(clients, stack.outputs, expected, day)

    readings = report.readings_published
    generated = sum(len(v) for v in expected.values())
    stage_rows: dict[str, dict[str, Any]] = {
        "ingest": {
            "unit": "readings",
            "items": readings,
            "records": report.records,
            "busy_s": round(publisher.seconds, 2),
            "span_s": round(published_s, 2),
            "per_s": round(readings / published_s, 1) if published_s else None,
            "max_lag_s": round(report.max_lag_s, 2),
        }
    }
    units = {
        "readings": readings,
        "forecasts": None,
        "summary events": None,
        "monthly results": None,
    }
    for stage, (function, unit) in STAGES.items():
        clock = clocks[stage]
        total = units[unit]
        items = (
            round(total * clock.records / report.records)
            if unit == "readings" and report.records
            else clock.records
        )
        span = clock.span_s()
        stage_rows[stage] = {
            "function": function,
            "unit": unit,
            "items": items,
            "records": clock.records,
            "calls": clock.calls,
            "busy_s": round(clock.busy_s, 2),
            "span_s": round(span, 2),
            "per_s": round(items / clock.busy_s, 1) if clock.busy_s else None,
            "max_lag_s": round(clock.max_lag_s, 2),
        }
    errors = {
        name: {"function_errors": s.function_errors, "to_failure_queue": s.sent_to_destination}
        for name, s in stats.items()
        if s.function_errors or s.sent_to_destination
    }
    # A reading is lost when the archive or the query store lacks it (or ingest did not
    # publish what the simulator generated).
    lost = max(accounting.archive_missing, accounting.store_missing) + abs(generated - readings)
    duplicated = accounting.archive_duplicated
    # The local runner (today) holds one global lock for each whole invocation, so the
    # handlers' busy times add up instead of overlapping: their sum against the wall time
    # says how much of the run was serialised by it; the largest busy time is the floor
    # a runner with concurrent functions (and free cores) would approach.
    handler_s = sum(clocks[stage].busy_s for stage in STAGES)
    slowest = max(
        (s for s in stage_rows if stage_rows[s]["busy_s"]), key=lambda s: stage_rows[s]["busy_s"]
    )
    return {
        "benchmark": "fleet-day",
        "households": len(fleet),
        "date": day.isoformat(),
        "seed": seed,
        "readings": readings,
        "seconds": round(seconds, 2),
        "speed_vs_real_time": round(DAY_S / seconds, 1),
        "goal_seconds": GOAL_SECONDS,
        # The goal is the whole fleet's day: a smaller run does not meet it (None).
        "goal_met": (
            bool(seconds < GOAL_SECONDS and lost == 0 and duplicated == 0)
            if len(fleet) >= ALL_HOUSEHOLDS
            else None
        ),
        "stages": stage_rows,
        "slowest_stage": slowest,
        # CPU seconds of the measured day (to its drain): the local AWS's process and the
        # pipeline's (this process: simulator, ingest, runner, every function). Against
        # ``seconds`` x cores they say whether the cores, not waiting, bound the run.
        "cpu_s": {
            "aws": (
                round(cpu_after[0] - cpu_before[0], 1)
                if cpu_after[0] is not None and cpu_before[0] is not None
                else None
            ),
            "pipeline": round(cpu_after[1] - cpu_before[1], 1),
            "wall_x_cpus": round(seconds * (os.cpu_count() or 1), 1),
        },
        "handler_seconds": round(handler_s, 2),
        "handler_share_of_wall": round(handler_s / seconds, 3) if seconds else None,
        "lost": lost,
        "duplicated": duplicated,
        "max_lag_s": round(max(r["max_lag_s"] for r in stage_rows.values()), 2),
        "archive": {
            "rows": accounting.archive_rows,
            "objects": accounting.archive_objects,
            "missing": accounting.archive_missing,
            "unexpected": accounting.archive_unexpected,
            "summaries": accounting.summaries,
        },
        "query_store": {
            "readings": accounting.store_readings,
            "missing": accounting.store_missing,
            "households_with_forecast": accounting.forecasts_stored,
        },
        "forecasts_published": accounting.forecasts_published,
        "monthly": {
            "results": accounting.monthly_results,
            "kinds": accounting.monthly_fallbacks,
        },
        "rejected": report.rejected,
        "missing_in_source": report.rows_missing,
        "runner_errors": errors,
        "local_aws_errors": _server_errors(moto_log),
        "warmup_days": warmup_days,
        "window_minutes": window_minutes,
        "speed": speed,
        "moto": moto,
        "load_seconds": round(load_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


def print_stages(result: dict[str, Any]) -> None:
    """The per-stage table on the console, slowest (most busy) first."""
    rows = sorted(result["stages"].items(), key=lambda item: -item[1]["busy_s"])
    _console(
        f"{'stage':<18} {'items':>9} {'unit':<15} {'busy s':>8} {'span s':>8} "
        f"{'per s':>9} {'max lag s':>9}"
    )
    for name, row in rows:
        per_s = f"{row['per_s']:,.1f}" if row["per_s"] else "-"
        _console(
            f"{name:<18} {row['items']:>9,} {row['unit']:<15} {row['busy_s']:>8.1f} "
            f"{row['span_s']:>8.1f} {per_s:>9} {row['max_lag_s']:>9.1f}"
        )
    _console(
        f"{result['households']:,} households, {result['readings']:,} readings in "
        f"{result['seconds']:.1f} s ({result['speed_vs_real_time']}x real time); "
        f"lost {result['lost']}, duplicated {result['duplicated']}; slowest stage: "
        f"{result['slowest_stage']}; handlers busy {result['handler_seconds']:.1f} s in all "
        f"({result['handler_share_of_wall']:.0%} of the wall time)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench fleet-day", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--households", type=int, default=ALL_HOUSEHOLDS)
    parser.add_argument("--date", type=dt.date.fromisoformat, default=DEFAULT_DATE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--window-minutes",
        type=int,
        default=DAY_MINUTES,
        help="the ingest window: 1440 (default) sends each household's day as one record, "
        "as `wattstream simulate --speed max` does; 30 sends every half-hour on its own, "
        "as live meters would (48x the records)",
    )
    parser.add_argument("--speed", default="max", help="simulated s per wall s, or max")
    parser.add_argument(
        "--warmup-days",
        type=int,
        default=1,
        help="days published and processed before the clock starts (realtime needs one)",
    )
    parser.add_argument("--moto", choices=["subprocess", "thread"], default="subprocess")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="sample every thread's stack during the measured day; the ranking goes to FILE",
    )
    args = parser.parse_args(argv)
    if args.households < 1:
        parser.error("--households must be >= 1")
    if not (args.data_dir / "lcl_daily_dataset").is_dir():
        parser.error(f"{args.data_dir} has no lcl_daily_dataset/ (see ../shared/data/README.md)")
    switch = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-day-") as state:
        try:
            result = run(
                households=args.households,
                day=args.date,
                seed=args.seed,
                window_minutes=args.window_minutes,
                speed=args.speed,
                moto=args.moto,
                warmup_days=args.warmup_days,
                profile=args.profile,
                state_dir=Path(state),
                data_dir=args.data_dir,
            )
        finally:
            sys.setswitchinterval(switch)
    print_stages(result)
    print(json.dumps(result))
    return 0
