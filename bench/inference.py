"""Inference benchmark: forecasts/s through the streaming core vs one ``model.predict`` per window.

``python -m bench inference [--bundle DIR] [--households N] [--steps N] [--naive-windows N]``

Both sides run in this process, pinned to ONE core (``sched_setaffinity``; LiteRT and
TensorFlow limited to one thread), and rates are per CPU second of this process
(``time.process_time``): on a pinned, single-threaded process that is throughput per
core, and it does not depend on what else the machine runs (wall-clock rates and the
load average are reported next to it), on the shipped model bundle
(``services/realtime/artifacts/<newest>``, or ``--bundle``) and real data: the April 2007
UCI slice as ``--households`` households (the same house entered at different days,
aligned to one clock so that every household completes a step at every step).

* **streaming** (ours): what the Lambda does per batch, minus AWS: every household's
  decoded record of the next 15 minutes -> :func:`services.realtime.core.stream.step`
  (window states, ONE batched LiteRT call for all households' windows, anomaly scores,
  new states, columnar forecasts). Each household is first warmed up with its history
  (untimed); then ``--steps`` steps are timed one by one: ``p50_ms``/``p99_ms`` are the
  wall-clock latency of one step for the whole batch, ``windows_per_s_per_core`` the
  windows forecast per CPU second over all timed steps.
* **naive**: the Keras model of the same bundle, ``model.predict(window[None])`` for one
  window at a time (the windows the streaming side built), ``--naive-windows`` of them
  after one untimed warm-up call.

Also reported, not part of the ratio: the split of a step between the core and the model
call, the cost of serialising the forecasts to JSON (the shell's job), and of a window
state's round trip through bytes (the DynamoDB item). Every forecast is counted and
checked to be finite before the numbers are printed. The last line is one JSON object.

``fleet`` (same run, same core): the global model for energy-only meters
(:mod:`services.realtime.model.fleet_model`, the newest shipped fleet bundle or
``--fleet-bundle``) on ``--fleet-households`` London half-hourly meters (the 100 of
``--fleet-source`` replayed from different days), warmed with a week, then ``--steps``
half-hour steps through :func:`~services.realtime.core.stream.step` (one batched call of
the fleet model per step, inside ``finish``); naive = the same features and
``keras_model.predict`` for one window at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from services.realtime.backends import LiteRtModel
from services.realtime.core.features import MEASUREMENTS
from services.realtime.core.stream import Delivery, StreamConfig, finish, prepare, step
from services.realtime.core.window import WindowState
from services.realtime.model.bundle import KERAS_FILE, shipped_bundle_dir
from shared.batch import ReadingBatch
from shared.uci import iter_uci

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT / "data" / "uci_household_power_consumption_2007-04.txt.gz"
FLEET_SOURCE = ROOT.parent / "shared" / "data" / "lcl_halfhourly_2013_100households.csv.gz"
GOAL_RATIO = 500
GOAL_WINDOWS_PER_S = 10_000
MINUTE_US = 60_000_000


def pin_one_core() -> int:
    """Run on a single CPU so that rates are per core; returns the CPU used."""
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[name] = "1"
    return cpu


def fleet(source: Path, households: int, resolution_s: int) -> list[ReadingBatch]:
    """The real series entered at ``households`` different bins, aligned to one clock."""
    series = ReadingBatch.concat([chunk.readings for chunk in iter_uci(source)])
    columns = {m: series.columns[m] for m in MEASUREMENTS}
    start = int(series.timestamps_us[0])
    bin_min = resolution_s // 60
    batches = []
    for k in range(households):
        offset_min = bin_min * ((k * 7) % (10 * 24 * 60 // bin_min))  # up to 10 days in
        first = int(np.searchsorted(series.timestamps_us, start + offset_min * MINUTE_US))
        shift = int(series.timestamps_us[first]) - start
        batches.append(
            ReadingBatch(
                f"uci-{k + 1:04d}",
                series.timestamps_us[first:] - shift,
                {m: c[first:] for m, c in columns.items()},
            )
        )
    return batches


def records(
    batches: list[ReadingBatch], start_us: int, stop_us: int, position: int
) -> list[Delivery]:
    """Every household's readings in ``[start_us, stop_us)`` as one decoded record each."""
    out = []
    for batch in batches:
        a, b = np.searchsorted(batch.timestamps_us, [start_us, stop_us])
        if b > a:
            out.append(Delivery(batch.slice(int(a), int(b)), position))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    cpu = pin_one_core()
    bundle = args.bundle or shipped_bundle_dir()
    model = LiteRtModel.from_bundle(bundle, num_threads=1, max_batch=args.max_batch)
    spec = model.spec
    config = StreamConfig(spec)
    res_us = spec.resolution_s * 1_000_000
    batches = fleet(args.source, args.households, spec.resolution_s)
    t0 = (int(batches[0].timestamps_us[0]) // res_us) * res_us
    warm_until = t0 + (config.model_window.history_bins + 2) * res_us  # steady state

    states: dict[str, WindowState | None] = {}
    warm = step(states, records(batches, t0, warm_until, 1), model, config)
    states.update(warm.states)

    plan = [
        records(batches, warm_until + i * res_us, warm_until + (i + 1) * res_us, 2 + i)
        for i in range(args.steps)
    ]
    latencies, cpu_times, model_times, windows, forecasts = [], [], [], 0, 0
    last = warm
    inputs: npt.NDArray[np.float32] = np.empty(
        (0, spec.input_steps, len(spec.features)), np.float32
    )
    for deliveries in plan:
        started, cpu_started = time.perf_counter(), time.process_time()
        prepared = prepare(states, deliveries, config)  # what step() does, with the model
        inputs = prepared.model_inputs  # call timed on its own
        called = time.process_time()
        predictions = model.predict(inputs)
        model_times.append(time.process_time() - called)
        last = finish(prepared, predictions)
        cpu_times.append(time.process_time() - cpu_started)
        latencies.append(time.perf_counter() - started)
        states.update(last.states)
        windows += last.stats.model_windows
        forecasts += last.stats.forecasts
        for rows in last.forecasts:
            if not np.isfinite(rows.points).all():
                raise AssertionError("a forecast is not finite")
    total_s = sum(cpu_times)

    started = time.perf_counter()
    documents = last.documents()
    json_s = time.perf_counter() - started
    sample = [s for s in states.values() if s is not None][:100]
    started = time.perf_counter()
    sizes = [len(WindowState.from_bytes(s.to_bytes()).to_bytes()) for s in sample]
    state_s = (time.perf_counter() - started) / len(sample)

    naive_rate, naive_wall_rate = naive(bundle, inputs, args.naive_windows)
    rate = windows / total_s
    wall_rate = windows / sum(latencies)
    return {
        "benchmark": "inference",
        "model_version": spec.version,
        "model_input": [spec.input_steps, len(spec.features)],
        "model_output": [spec.horizon_steps, len(spec.quantiles)],
        "litert_batch": "dynamic" if model.dynamic_batch else model.fixed_batch,
        "households": args.households,
        "steps": args.steps,
        "windows": windows,
        "forecasts": forecasts,
        "windows_per_s_per_core": round(rate, 1),
        "naive_windows_per_s": round(naive_rate, 2),
        "ratio": round(rate / naive_rate, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 2),
        "cpu_p50_ms": round(statistics.median(cpu_times) * 1000, 2),
        "model_cpu_ms_per_step": round(statistics.median(model_times) * 1000, 2),
        "core_cpu_ms_per_step": round(
            statistics.median(np.subtract(cpu_times, model_times).tolist()) * 1000, 2
        ),
        "wall_windows_per_s": round(wall_rate, 1),
        "naive_wall_windows_per_s": round(naive_wall_rate, 2),
        "wall_ratio": round(wall_rate / naive_wall_rate, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "json_documents_per_s": round(len(documents) / json_s, 1) if documents else None,
        "state_bytes": int(np.median(sizes)),
        "state_round_trip_us": round(state_s * 1e6, 1),
        "goals": {"ratio": GOAL_RATIO, "windows_per_s_per_core": GOAL_WINDOWS_PER_S},
        "goals_met": rate >= GOAL_WINDOWS_PER_S and rate / naive_rate >= GOAL_RATIO,
        "cores": 1,
        "cpu": cpu,
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


def naive(bundle: Path, inputs: np.ndarray, count: int) -> tuple[float, float]:
    """Windows per CPU second and per wall second of ``keras_model.predict`` on one window
    at a time (the original design)."""
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from services.realtime.model.bundle import read_spec

    spec = read_spec(bundle)
    model = keras.saving.load_model(bundle / KERAS_FILE, compile=False)
    scaled = spec.scale(inputs)
    model.predict(scaled[:1], verbose=0)  # build the predict function (untimed)
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        out = model.predict(scaled[i % len(scaled)][None], verbose=0)
        spec.unscale_target(out)
    return count / (time.process_time() - cpu), count / (time.perf_counter() - started)


# ------------------------------------------------------------------ the fleet model


class _Timed:
    """The port, with the CPU time of its calls (the energy model runs inside finish)."""

    def __init__(self, model: Any) -> None:
        self.spec = model.spec
        self._model = model
        self.cpu_s = 0.0

    def predict(self, windows: Any) -> Any:
        started = time.process_time()
        try:
            return self._model.predict(windows)
        finally:
            self.cpu_s += time.process_time() - started


def london_fleet(source: Path, households: int, days: int) -> list[ReadingBatch]:
    """``households`` energy-only meters from the London half-hourly file: household
    ``k`` replays London household ``k % 100`` from a different day, on one clock."""
    from services.realtime.model.fleet_data import load_energy_grid

    grid = load_energy_grid(source)
    bins = days * 48
    start_us = grid.start_s * 1_000_000
    out = []
    for k in range(households):
        row = grid.kw[k % len(grid.households)]
        offset = 48 * ((k // len(grid.households)) * 5 % 200)
        kw = row[offset : offset + bins]
        kw = np.where(np.isnan(kw), np.nanmean(row), kw)  # every step forecast
        out.append(
            ReadingBatch(
                f"lcl-{k + 1:05d}",
                start_us + np.arange(bins, dtype=np.int64) * 1800 * 1_000_000,
                {"energy_kwh": kw / 2, "interval_s": np.full(bins, 1800.0)},
            )
        )
    return out


def run_fleet(args: argparse.Namespace) -> dict[str, Any]:
    """The fleet model for energy-only meters through the streaming core, and per window."""
    from services.realtime.model.fleet_model import FleetModel, shipped_fleet_bundle

    bundle = args.fleet_bundle or shipped_fleet_bundle()
    if bundle is None:
        raise SystemExit("no fleet bundle shipped; train one: wattstream train fleet --data DIR")
    if not args.fleet_source.is_file():
        raise SystemExit(f"London half-hourly file not found: {args.fleet_source}")
    lstm = LiteRtModel.from_bundle(args.bundle or shipped_bundle_dir(), num_threads=1)
    fleet_model = FleetModel.from_bundle(bundle, num_threads=1, max_batch=args.max_batch)
    timed = _Timed(fleet_model)
    config = StreamConfig(lstm.spec, energy_model=timed)
    half_hour_us = 1800 * 1_000_000
    batches = london_fleet(args.fleet_source, args.fleet_households, 9)
    t0 = int(batches[0].timestamps_us[0])
    warm_until = t0 + 8 * 48 * half_hour_us  # a full week of history, then steady state
    states: dict[str, WindowState | None] = {}
    states.update(step(states, records(batches, t0, warm_until, 1), lstm, config).states)
    plan = [
        records(batches, warm_until + i * half_hour_us, warm_until + (i + 1) * half_hour_us, 2 + i)
        for i in range(args.steps)
    ]
    timed.cpu_s = 0.0
    latencies, cpu_times, windows, fallback = [], [], 0, 0
    inputs: list[np.ndarray] = []
    for deliveries in plan:
        started, cpu_started = time.perf_counter(), time.process_time()
        result = step(states, deliveries, lstm, config)
        cpu_times.append(time.process_time() - cpu_started)
        latencies.append(time.perf_counter() - started)
        states.update(result.states)
        windows += result.stats.energy_model_windows
        fallback += result.stats.fallback_windows
        for rows in result.forecasts:
            if not np.isfinite(rows.points).all():
                raise AssertionError("a forecast is not finite")
    total_s = sum(cpu_times)
    # the windows of the last step, for the naive side
    for state in list(states.values())[: args.naive_windows]:
        assert state is not None
        kw = state.sums[-337:-1, 0] / np.maximum(state.counts[-337:-1, 0], 1)
        inputs.append(kw)
    issue_s = float((states[batches[0].household_id].head or 0) * 1800)  # type: ignore[union-attr]
    naive_rate = naive_fleet(bundle, fleet_model, np.array(inputs), issue_s, args.naive_windows)
    rate = windows / total_s
    return {
        "model_version": fleet_model.spec.version,
        "households": args.fleet_households,
        "steps": args.steps,
        "windows": windows,
        "fallback_windows": fallback,
        "windows_per_s_per_core": round(rate, 1),
        "naive_windows_per_s": round(naive_rate, 2),
        "ratio": round(rate / naive_rate, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 2),
        "model_cpu_ms_per_step": round(timed.cpu_s / len(plan) * 1000, 2),
        "core_cpu_ms_per_step": round((total_s - timed.cpu_s) / len(plan) * 1000, 2),
        "goals_met": rate >= GOAL_WINDOWS_PER_S and rate / naive_rate >= GOAL_RATIO,
    }


def naive_fleet(
    bundle: Path, served: Any, histories: np.ndarray, issue_s: float, count: int
) -> float:
    """Windows per CPU second of one window at a time: the features, then
    ``keras_model.predict`` on that window (the original design)."""
    import keras

    from services.realtime.model.fleet_features import fleet_features

    model = keras.saving.load_model(bundle / KERAS_FILE, compile=False)
    first = fleet_features(histories[:1], [issue_s], served.holidays)
    model.predict(first.x[:, None, :], verbose=0)  # build the predict function (untimed)
    cpu = time.process_time()
    for i in range(count):
        one = fleet_features(histories[i % len(histories)][None], [issue_s], served.holidays)
        raw = model.predict(one.x[:, None, :], verbose=0).astype(np.float64)
        served.to_kw(raw, one.base, one.level, one.spread)
    return count / (time.process_time() - cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench inference", description=__doc__)
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle directory")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="UCI text file")
    parser.add_argument("--households", type=int, default=512, help="households per batch")
    parser.add_argument("--steps", type=int, default=40, help="timed streaming steps")
    parser.add_argument("--naive-windows", type=int, default=40, help="naive predict calls")
    parser.add_argument("--max-batch", type=int, default=1024, help="LiteRT chunk size")
    parser.add_argument("--fleet-bundle", type=Path, default=None, help="fleet model bundle")
    parser.add_argument(
        "--fleet-source", type=Path, default=FLEET_SOURCE, help="London half-hourly file"
    )
    parser.add_argument(
        "--fleet-households", type=int, default=512, help="energy-only meters per batch"
    )
    args = parser.parse_args(argv)
    result = run(args)
    result["fleet"] = run_fleet(args)
    result["goals_met"] = bool(result["goals_met"] and result["fleet"]["goals_met"])
    print(
        f"streaming: {result['windows_per_s_per_core']:,.0f} windows per CPU second on one core "
        f"({args.households} households; per step: {result['cpu_p50_ms']} ms CPU = model "
        f"{result['model_cpu_ms_per_step']} + core {result['core_cpu_ms_per_step']}; wall p50 "
        f"{result['p50_ms']} ms, p99 {result['p99_ms']} ms at load {result['load_average_1m']})"
    )
    print(
        f"naive model.predict: {result['naive_windows_per_s']:,.1f} windows/s; "
        f"ratio {result['ratio']:,.0f}"
    )
    fleet = result["fleet"]
    print(
        f"fleet model (energy-only meters): {fleet['windows_per_s_per_core']:,.0f} windows per "
        f"CPU second ({args.fleet_households} households; per step: model "
        f"{fleet['model_cpu_ms_per_step']} ms + core {fleet['core_cpu_ms_per_step']} ms); naive "
        f"{fleet['naive_windows_per_s']:,.1f} windows/s; ratio {fleet['ratio']:,.0f}"
    )
    print(json.dumps(result))
    return 0
