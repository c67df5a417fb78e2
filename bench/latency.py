"""Latency benchmark: a reading published -> its forecast readable through the gateway API.

``python -m bench latency [--samples N] [--realtime auto|real|stub] [--poll-s S]``

The local stack (moto server in this process, provisioned from ``deploy/template.yaml``)
runs three template functions on the event-source runner, each mapping in its own thread
with the template's batching settings: ``RealtimeFunction`` (readings -> forecasts),
``GatewayForecastsFunction`` (forecasts -> query store) and ``GatewayReadingsFunction``
(readings -> query store). The gateway functions and the API are built by their own
composition roots from the functions' environments, exactly as on Lambda; the API is
served by uvicorn on a free loopback port.

Warm-up: two days of the real UCI slice are published and processed until a forecast is
readable. Then, per sample: the next step of real readings (one record: the realtime
model's resolution, or one minute for the stub) is published; the benchmark polls the
stream (``get_records`` on its own iterator, the **baseline**: the earliest moment any
consumer could see the record) and then ``GET /households/{id}/forecast`` until a forecast
issued later than the previous one is served. Latency = that moment - the publish call.

``--realtime auto`` uses the realtime service's own handler when its composition root
can be built (a shipped model bundle), else a stub that forecasts the last reading's power
(same stream, same records, same gateway path: only the model is missing); the JSON says
which (``realtime``) and why (``realtime_note``).

What bounds the result: the realtime mapping's ``MaximumBatchingWindowInSeconds`` (1 s in
the template) holds a lone record for up to a second; each hop's poll interval
(``--poll-s``, the runner's idle sleep) adds up to that much. On AWS, standard Kinesis
polling is about once a second per shard and hop; enhanced fan-out consumers push records
in ~70 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from services.gateway.core.tokens import issue_token
from services.gateway.shells.api_app import create_app
from services.gateway.shells.api_lambda import dead_letter_queues, deps_from_environment
from services.gateway.shells.serve import start_api
from shared.batch import ReadingBatch, us_to_datetime
from shared.codec import decode_record, encode_batch
from shared.schema import Forecast, ForecastPoint
from shared.streams.kinesis import KinesisPublisher
from shared.streams.ports import StreamPublisher, StreamRecord
from shared.uci import iter_uci
from wattstream.local.runner import EventSourceRunner
from wattstream.local.server import EmbeddedAws, client_factory, provision

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT / "data" / "uci_household_power_consumption_2007-04.txt.gz"
TEMPLATE = ROOT / "deploy" / "template.yaml"
REGION = "us-east-1"
HOUSEHOLD = "uci-0001"
GOAL_P99_S = 2.0
FUNCTIONS = ("RealtimeFunction", "GatewayForecastsFunction", "GatewayReadingsFunction")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def function_variables(stack: Any, logical_id: str) -> dict[str, str]:
    """The template function's environment, as its composition root sees it on the stack."""
    return {
        **stack.functions[logical_id].environment,
        "AWS_ENDPOINT_URL": stack.endpoint_url,
        "AWS_REGION": stack.region,
        "AWS_DEFAULT_REGION": stack.region,
    }


def stub_realtime(publisher: StreamPublisher) -> Handler:
    """A stand-in for the realtime model: forecasts the last reading's power, +-20 %."""

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        import base64

        latest: dict[str, tuple[int, float]] = {}
        for record in event["Records"]:
            batch = decode_record(base64.b64decode(record["kinesis"]["data"]))
            power = batch.columns["global_active_power_kw"]
            i = int(np.argmax(batch.timestamps_us))
            value = float(power[i]) if np.isfinite(power[i]) else 0.0
            latest[batch.household_id] = (int(batch.timestamps_us[i]), value)
        records = []
        for household, (stamp, value) in latest.items():
            issued = us_to_datetime(stamp) + dt.timedelta(minutes=1)
            points = [
                ForecastPoint(
                    timestamp=issued + dt.timedelta(minutes=k),
                    value_kw=value,
                    lower_kw=0.8 * value,
                    upper_kw=1.2 * value,
                )
                for k in range(3)
            ]
            forecast = Forecast(
                household_id=household,
                issued_at=issued,
                resolution_s=60,
                points=points,
                model_version="bench-stub",
                anomaly_score=0.0,
                anomaly=False,
                fallback_reason="latency benchmark stub",
            )
            records.append(StreamRecord(household, forecast.model_dump_json().encode()))
        if records:
            publisher.publish(records)
        return {"batchItemFailures": []}

    return handle


def realtime_handler(stack: Any, clients: Any, mode: str) -> tuple[Handler, str, str, int]:
    """The realtime handler, its kind, why, and its forecast step in minutes."""
    reason = "requested"
    if mode in ("auto", "real"):
        try:
            from services.realtime.shells import lambda_handler

            deps = lambda_handler.deps_from_environment(
                function_variables(stack, "RealtimeFunction")
            )
            step = max(1, int(deps.model.spec.resolution_s) // 60)
            return lambda_handler.handler.build(deps), "real", "the realtime service", step
        except Exception as error:  # any reason the real handler cannot run here
            if mode == "real":
                raise
            reason = f"realtime handler unavailable ({type(error).__name__}: {error})"[:300]
    publisher = KinesisPublisher(stack.outputs["ForecastsStreamName"], clients("kinesis"))
    return stub_realtime(publisher), "stub", reason, 1


def minutes_of(source: Path) -> ReadingBatch:
    """The real readings of the slice, one household, in time order (gaps are skipped)."""
    batches = [chunk.readings for chunk in iter_uci(source, household_id=HOUSEHOLD)]
    return ReadingBatch.concat(batches).sorted_by_time()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


class StreamWatcher:
    """The baseline: reads the readings stream on its own iterator (no consumer involved)."""

    def __init__(self, kinesis: Any, stream: str) -> None:
        self.kinesis = kinesis
        shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
        self.iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard, ShardIteratorType="LATEST"
        )["ShardIterator"]

    def wait_for(self, sequence: str, timeout_s: float) -> float:
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            reply = self.kinesis.get_records(ShardIterator=self.iterator, Limit=100)
            self.iterator = reply["NextShardIterator"]
            if any(r["SequenceNumber"] == sequence for r in reply["Records"]):
                return time.perf_counter()
            time.sleep(0.005)
        raise TimeoutError("record not readable from the stream")


def issued_at(api: httpx.Client, headers: Mapping[str, str]) -> dt.datetime | None:
    reply = api.get(f"/households/{HOUSEHOLD}/forecast", headers=headers)
    if reply.status_code == 404:
        return None
    reply.raise_for_status()
    return dt.datetime.fromisoformat(reply.json()["forecast"]["issued_at"].replace("Z", "+00:00"))


def wait_for_forecast(
    api: httpx.Client,
    headers: Mapping[str, str],
    after: dt.datetime | None,
    timeout_s: float,
    poll_s: float = 0.005,
) -> tuple[float, dt.datetime]:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        current = issued_at(api, headers)
        if current is not None and (after is None or current > after):
            return time.perf_counter(), current
        time.sleep(poll_s)
    raise TimeoutError(f"no new forecast after {after} within {timeout_s} s")


def run(
    *,
    samples: int,
    realtime: str,
    poll_s: float,
    warmup_minutes: int,
    source: Path,
    state_dir: Path,
) -> dict[str, Any]:
    readings = minutes_of(source)
    with EmbeddedAws() as aws:
        parameters = {"ReadingsShardCount": "1", "ForecastsShardCount": "1"}
        stack = provision(
            TEMPLATE, endpoint_url=aws.endpoint_url, region=REGION, parameters=parameters
        )
        clients = client_factory(aws.endpoint_url, REGION)
        handler, kind, note, step = realtime_handler(stack, clients, realtime)
        runner = EventSourceRunner(
            stack,
            clients=clients,
            checkpoint_path=state_dir / "checkpoints.json",
            handlers={"RealtimeFunction": handler},
            functions=set(FUNCTIONS),
            idle_sleep_s=poll_s,
            log_dir=state_dir / "logs",
        )
        deps = deps_from_environment(
            {
                **function_variables(stack, "GatewayApiFunction"),
                "GATEWAY_DEAD_LETTER_QUEUES": json.dumps(dead_letter_queues(stack.outputs)),
            }
        )
        server = start_api(create_app(deps))
        token = issue_token(deps.token_secret, households=[HOUSEHOLD], ttl_s=3600)
        headers = {"Authorization": f"Bearer {token}"}
        kinesis = clients("kinesis")
        stream = stack.outputs["ReadingsStreamName"]
        publisher = KinesisPublisher(stream, kinesis)
        latencies: list[float] = []
        baseline: list[float] = []
        runner.start()
        try:
            with httpx.Client(base_url=server.url, timeout=10) as api:
                warm = readings.slice(0, warmup_minutes)
                publisher.publish([StreamRecord(HOUSEHOLD, d) for d in encode_batch(warm)])
                print(f"warm-up: {len(warm)} readings published; waiting for a first forecast")
                _, last = wait_for_forecast(api, headers, None, timeout_s=300)
                watcher = StreamWatcher(kinesis, stream)
                position = warmup_minutes
                for i in range(samples):
                    piece = readings.slice(position, position + step)
                    position += step
                    (data,) = encode_batch(piece)
                    started = time.perf_counter()
                    reply = kinesis.put_record(StreamName=stream, PartitionKey=HOUSEHOLD, Data=data)
                    seen = watcher.wait_for(reply["SequenceNumber"], timeout_s=30)
                    served, last = wait_for_forecast(api, headers, last, timeout_s=60)
                    latencies.append(served - started)
                    baseline.append(seen - started)
                    if (i + 1) % 10 == 0:
                        print(f"  {i + 1}/{samples}: p50 so far {percentile(latencies, 50):.3f} s")
                    time.sleep(0.05 + 0.2 * ((i * 7919) % 11) / 10)  # de-phase the pollers
        finally:
            runner.stop()
            server.stop()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return {
        "benchmark": "latency",
        "n": len(latencies),
        "p50_s": round(p50, 4),
        "p99_s": round(p99, 4),
        "max_s": round(max(latencies), 4) if latencies else None,
        "mean_s": round(float(np.mean(latencies)), 4) if latencies else None,
        "baseline_stream_p50_s": round(percentile(baseline, 50), 4),
        "baseline_stream_p99_s": round(percentile(baseline, 99), 4),
        "goal_p99_s": GOAL_P99_S,
        "goal_met": bool(p99 < GOAL_P99_S),
        "realtime": kind,
        "realtime_note": note,
        "step_minutes": step,
        "runner_poll_s": poll_s,
        "realtime_batching_window_s": 1,
        "runner_errors": len(runner.errors),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench latency", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--realtime", choices=["auto", "real", "stub"], default="auto")
    parser.add_argument("--poll-s", type=float, default=0.1, help="the runner's idle poll interval")
    parser.add_argument("--warmup-minutes", type=int, default=2 * 1440)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as state:
        result = run(
            samples=args.samples,
            realtime=args.realtime,
            poll_s=args.poll_s,
            warmup_minutes=args.warmup_minutes,
            source=args.source,
            state_dir=Path(state),
        )
    print(
        f"reading published -> forecast served by the API: p50 {result['p50_s']:.3f} s, "
        f"p99 {result['p99_s']:.3f} s over {result['n']} samples ({result['realtime']} realtime); "
        f"readable on the stream after p50 {result['baseline_stream_p50_s']:.3f} s"
    )
    print(json.dumps(result))
    return 0
