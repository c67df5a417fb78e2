"""Fleet benchmark: a rest-of-month forecast for all 5,566 London households, and our
model against Prophet's default settings on a sample, in the same run.

``python -m bench monthly-fleet [--workers W] [--households H] [--sample N] [--seed S]
[--as-of YYYY-MM-DD]``

1. **Fleet**: :func:`services.monthly.fleet.run_fleet` over every LCL block (or the first
   ``--households H`` households in block order, for a quick run), as of
   2014-02-14 (each household's newest final day on or before it), ``W`` worker
   processes (default: all cores), writing what the service writes (forecast JSON and
   the Prophet checkpoint; no plots) to a temporary folder that is removed afterwards.
   ``seconds`` is its wall time, loading and writing included; ``fleet_cpu_seconds`` the
   CPU of this process and its workers over the same span (``..._per_worker``: what the
   wall time would be on ``W`` free cores, the figure to read on a loaded machine).
2. **Same-run comparison** on a seeded sample of households whose December 2013 and
   January 2014 are complete (February 2014 is complete for nobody: the data set's
   last day holds one half-hour), each forecast as of 2013-12-14 and 2014-01-15 (the
   fleet's own February forecasts cannot be scored; ``--sample 0`` skips sections 2
   and 3, whose JSON fields are then null), in this process, one
   household at a time, alternating ours and the baseline so that load from other
   processes hits both alike:

   * ours: ``forecast_month`` with the production settings (fit, intervals from 500
     joint paths, ``model_to_json`` checkpoint);
   * default Prophet: ``Prophet()`` as shipped (cmdstan L-BFGS, 1,000 uncertainty
     samples), ``fit`` on the same usable history, ``predict`` of the remaining days.

   ``*_seconds_per_household`` are mean wall seconds per household-forecast; ``speedup``
   their ratio. Accuracy of both (and of the trailing 28-day mean) is the MAPE of the
   month total on the sample's forecasts.

3. **Service events** (``--events-households H``, default 8): the monthly Lambda's own
   per-household step (:func:`~services.monthly.shells.lambda_handler.forecast_household`,
   warm starts, plot data, month actuals; local result store) fed one real daily summary
   at a time for December 2013 and the first two days of January 2014 (so December
   completes and is scored), on households of the same sample. ``cpu_p50_s`` is the
   median process CPU per event (goal < 0.2 s). The **baseline**, in the same run: what
   each event cost before plots were rendered on request, i.e. the same event plus
   rendering its components PNG (timed on every ``--render-every``-th event, where the
   gateway's renderer draws the event's own plot data): ``baseline_cpu_p50_s``.

The last line printed is one JSON object.
"""

from __future__ import annotations

# ruff: noqa: E402  (the environment below must be set before numpy is imported)
import os

# One BLAS thread per process (see bench/accuracy_monthly.py), before numpy loads.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import datetime as dt
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import numpy as np

from bench.accuracy_monthly import (
    LCL_DIR,
    cpu_seconds,
    default_prophet_rest,
    single_threaded_blas,
)
from bench.monthly_events import EVENT_DAYS, event_cpu
from services.monthly.adapters.datasets import lcl_blocks, read_lcl_block
from services.monthly.core.backtest import ape, trailing_mean
from services.monthly.core.forecast import DEFAULT_SETTINGS, forecast_month
from services.monthly.core.prophet_map import quiet_prophet_logging
from services.monthly.core.series import DailySeries, days_in_month, month_end, month_start
from services.monthly.fleet import FleetProgress, run_fleet

GOAL_SECONDS: Final = 60.0
GOAL_CPU_P50_S: Final = 0.2
GOAL_SPEEDUP: Final = 2.0
FLEET_AS_OF: Final = dt.date(2014, 2, 14)
SAMPLE_AS_OF: Final = (dt.date(2013, 12, 14), dt.date(2014, 1, 15))


def _complete_month(series: DailySeries, day: dt.date) -> bool:
    month = series.between(month_start(day), month_end(day))
    return bool(month.usable().all())


def sample_households(lcl_dir: Path, size: int, seed: int) -> list[DailySeries]:
    """Households with complete months for every sample as-of day (seeded choice)."""
    eligible = [
        s
        for path in lcl_blocks(lcl_dir)
        for s in read_lcl_block(path)
        if all(_complete_month(s, day) for day in SAMPLE_AS_OF) and s.usable().sum() >= 365
    ]
    eligible.sort(key=lambda s: s.household_id)
    picks = np.random.default_rng(seed).choice(
        len(eligible), size=min(size, len(eligible)), replace=False
    )
    return [eligible[i] for i in sorted(picks)]


def compare(sample: list[DailySeries]) -> dict[str, Any]:
    """Ours and default Prophet, alternating, on the same forecasts; times and errors."""
    wall = {"ours": 0.0, "default": 0.0}
    cpu = {"ours": 0.0, "default": 0.0}
    errors: dict[str, list[float]] = {"ours": [], "default": [], "trailing": []}
    for series in sample:
        for as_of in SAMPLE_AS_OF:
            history = series.until(as_of)
            month = series.between(month_start(as_of), month_end(as_of))
            actual = float(month.kwh.sum())
            to_date = float(month.kwh[: as_of.day].sum())
            left = days_in_month(as_of) - as_of.day

            started, started_cpu = time.perf_counter(), cpu_seconds()
            ours = forecast_month(history, as_of, settings=DEFAULT_SETTINGS).forecast
            wall["ours"] += time.perf_counter() - started
            cpu["ours"] += cpu_seconds() - started_cpu

            started, started_cpu = time.perf_counter(), cpu_seconds()
            default = to_date + default_prophet_rest(history, as_of, left)
            wall["default"] += time.perf_counter() - started
            cpu["default"] += cpu_seconds() - started_cpu

            errors["ours"].append(ape(actual, ours.month_total_kwh))
            errors["default"].append(ape(actual, default))
            errors["trailing"].append(ape(actual, to_date + trailing_mean(history, as_of, left)))
    n = len(errors["ours"])
    return {
        "forecasts": n,
        "ours_seconds": wall["ours"] / n,
        "default_seconds": wall["default"] / n,
        "ours_cpu_seconds": cpu["ours"] / n,
        "default_cpu_seconds": cpu["default"] / n,
        "ours_mape": float(np.mean(errors["ours"])),
        "default_mape": float(np.mean(errors["default"])),
        "trailing_mape": float(np.mean(errors["trailing"])),
    }


def _comparison(sample: list[DailySeries], seed: int) -> dict[str, Any]:
    """Section 2 (ours against default Prophet), as the summary's fields (null: skipped)."""
    keys = (
        "ours_seconds_per_household",
        "default_prophet_seconds_per_household",
        "speedup",
        "cpu_speedup",
        "ours_mape",
        "default_prophet_mape",
        "trailing_28d_mean_mape",
    )
    if not sample:
        print("same-run comparison: skipped (--sample 0)")
        return {**dict.fromkeys(keys), "sample_households": 0, "sample_forecasts": 0}
    print(
        f"same-run comparison: {len(sample)} households x {len(SAMPLE_AS_OF)} as-of days "
        f"(seed {seed}), ours and default Prophet alternating"
    )
    result = compare(sample)
    speedup = result["default_seconds"] / result["ours_seconds"]
    print(f"  {'':22s} {'s/forecast':>10s} {'CPU s':>8s} {'MAPE %':>8s}")
    print(
        f"  {'ours':22s} {result['ours_seconds']:10.4f} {result['ours_cpu_seconds']:8.4f} "
        f"{result['ours_mape']:8.2f}"
    )
    print(
        f"  {'default Prophet':22s} {result['default_seconds']:10.4f} "
        f"{result['default_cpu_seconds']:8.4f} {result['default_mape']:8.2f}"
    )
    print(f"  {'trailing 28-day mean':22s} {'':>10s} {'':>8s} {result['trailing_mape']:8.2f}")
    print(f"  speedup {speedup:.1f}x (goal >= {GOAL_SPEEDUP:.0f}x at equal or better accuracy)")
    return {
        "ours_seconds_per_household": round(result["ours_seconds"], 4),
        "default_prophet_seconds_per_household": round(result["default_seconds"], 4),
        "speedup": round(speedup, 2),
        "cpu_speedup": round(result["default_cpu_seconds"] / result["ours_cpu_seconds"], 2),
        "ours_mape": round(result["ours_mape"], 2),
        "default_prophet_mape": round(result["default_mape"], 2),
        "trailing_28d_mean_mape": round(result["trailing_mape"], 2),
        "sample_households": len(sample),
        "sample_forecasts": result["forecasts"],
    }


def _events(sample: list[DailySeries], render_every: int) -> dict[str, Any]:
    """Section 3 (CPU per service event), as the summary's fields (null: skipped)."""
    keys = (
        "cpu_p50_s",
        "cpu_p90_s",
        "render_cpu_p50_s",
        "baseline_cpu_p50_s",
        "cpu_ratio",
        "months_scored",
        "december_forecasts_scored",
    )
    if not sample:
        print("service events: skipped (no sample households)")
        return {"events": 0, **dict.fromkeys(keys)}
    print(
        f"service events: {len(sample)} households x {len(EVENT_DAYS)} days "
        "(December 2013 + 2 days), one summary event at a time through forecast_household"
    )
    events = event_cpu(sample, render_every=render_every)
    print(
        f"  {events['events']} events {events['outcomes']}: CPU p50 {events['cpu_p50_s']:.4f} s, "
        f"p90 {events['cpu_p90_s']:.4f} s (goal p50 < {GOAL_CPU_P50_S} s); rendering the PNG "
        f"per event would add {events['render_cpu_p50_s']:.4f} s (p50 of "
        f"{events['renders_timed']}): baseline p50 {events['baseline_cpu_p50_s']:.4f} s; "
        f"December scored for {events['december_scored_households']} households"
    )
    return {
        "events": events["events"],
        "cpu_p50_s": round(events["cpu_p50_s"], 4),
        "cpu_p90_s": round(events["cpu_p90_s"], 4),
        "render_cpu_p50_s": round(events["render_cpu_p50_s"], 4),
        "baseline_cpu_p50_s": round(events["baseline_cpu_p50_s"], 4),
        "cpu_ratio": round(events["baseline_cpu_p50_s"] / events["cpu_p50_s"], 2),
        "months_scored": events["months_scored"],
        "december_forecasts_scored": events["december_forecasts_scored"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench monthly-fleet")
    parser.add_argument("--data", type=Path, default=LCL_DIR)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--households", type=int, default=None, help="only the first H households (default: all)"
    )
    parser.add_argument("--sample", type=int, default=100)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=FLEET_AS_OF)
    parser.add_argument("--events-households", type=int, default=8)
    parser.add_argument("--render-every", type=int, default=4)
    args = parser.parse_args(argv)
    single_threaded_blas()
    quiet_prophet_logging()
    load_before = os.getloadavg()

    def progress(p: FleetProgress) -> None:
        if p.blocks_done % 14 == 0 or p.blocks_done == p.blocks_total:
            print(
                f"  fleet: {p.blocks_done}/{p.blocks_total} blocks, {p.households_done:,} "
                f"households, {p.fallbacks} fallbacks, {p.seconds:.0f} s",
                flush=True,
            )

    out = Path(tempfile.mkdtemp(prefix="monthly-fleet-"))
    try:
        which = "all" if args.households is None else f"the first {args.households:,}"
        print(
            f"monthly-fleet: {which} households of {args.data}, as of {args.as_of}, "
            f"{args.workers} workers; load average {load_before[0]:.1f}"
        )
        fleet_cpu = cpu_seconds()
        report = run_fleet(
            args.data,
            out,
            workers=args.workers,
            as_of=args.as_of,
            on_progress=progress,
            limit=args.households,
        )
        fleet_cpu = cpu_seconds() - fleet_cpu  # this process and its finished workers
        written = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(
        f"  {report.households:,} households in {report.seconds:.1f} s "
        f"(goal < {GOAL_SECONDS:.0f} s): {report.prophet:,} Prophet, {report.fallbacks} "
        f"fallbacks {report.fallbacks_by_reason}, {len(report.failed)} failed; "
        f"{written / 1e6:.0f} MB written"
    )

    sample = sample_households(args.data, args.sample, args.seed) if args.sample > 0 else []
    summary = {
        "households": report.households,
        "seconds": round(report.seconds, 1),
        "fleet_cpu_seconds": round(fleet_cpu, 1),
        "fleet_cpu_seconds_per_worker": round(fleet_cpu / report.workers, 1),
        **_comparison(sample, args.seed),
        "fleet_seconds_per_household_per_worker": round(
            report.seconds * report.workers / max(1, report.households), 4
        ),
        "fleet_cpu_ms_per_household": round(1000 * fleet_cpu / max(1, report.households), 2),
        "prophet": report.prophet,
        "fallbacks": report.fallbacks,
        "fallbacks_by_reason": report.fallbacks_by_reason,
        "failed": len(report.failed),
        "workers": report.workers,
        "as_of": args.as_of.isoformat(),
        "megabytes_written": round(written / 1e6, 1),
        "load_average_before": round(load_before[0], 2),
        "load_average_after": None,  # set below, after the sections that follow
        "goal_seconds": GOAL_SECONDS,
        "goal_speedup": GOAL_SPEEDUP,
        **_events(sample[: args.events_households], args.render_every),
        "goal_cpu_p50_s": GOAL_CPU_P50_S,
    }
    summary["load_average_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(summary))
    return 0
