"""Monthly backtests: our Prophet model and the naive baselines side by side, in one run.

``python -m bench accuracy-monthly [--households N] [--seed S] [--workers W] [--tune]``

1. **Brownlee's weekly protocol** on the full UCI file (46 test weeks of 7-day
   walk-forward, train up to 2010-01-02, RMSE in his units, kW*min per day; see
   :mod:`services.monthly.core.backtest` for the aggregation, which reproduces his
   week-one-year-ago 465.294 exactly). Our model is refitted every week, warm-started
   from the previous week's fit, as the service does. Baselines measured in the same run:
   week-one-year-ago, daily and weekly persistence, AR(7) by least squares.
2. **Rest of month**: every eligible month of 2010 in the UCI data (January..October;
   November ends on the 26th) and of 2013 in a seeded sample of London households
   (``--households``, default 200 of 5,566, ``numpy.random.default_rng(seed).choice`` over
   the sorted ids; all 5,566 x 48 forecasts take hours on two shared cores), as-of days
   1, 8, 15, 22. The UCI truth is Brownlee's gap-filled series (the August and September
   2010 gaps hold the previous day's values; a percentage error does not depend on the
   unit). MAPE of the month total for ours and each baseline, pooled over both data sets
   and per data set, with the 80 %/95 % interval coverage of ours.

``--tune`` instead prints the settings table (accuracy vs CPU time per forecast, same
households, same run) from which :data:`services.monthly.core.forecast.DEFAULT_SETTINGS`
was chosen; Prophet with its default settings (Stan L-BFGS, 1,000 uncertainty samples,
``predict``) is its first row. CPU seconds include the Stan subprocesses (``os.times``).

The last line printed is one JSON object.
"""

from __future__ import annotations

# ruff: noqa: E402  (the environment below must be set before numpy is imported)
import os

# One BLAS thread per process, set before numpy loads OpenBLAS: our matrices are ~50x50,
# and on two shared cores BLAS threads only fight (measured: MAP fit 3x, sampling 17x
# slower). Benchmarks are processes of their own, so this is theirs to decide.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import dataclasses
import datetime as dt
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from services.monthly.adapters.datasets import lcl_blocks, read_lcl_block, uci_daily_kw_minutes
from services.monthly.core.backtest import (
    BROWNLEE_REFERENCES,
    RestOfMonthTask,
    ape,
    ar_forecast,
    brownlee_weeks,
    daily_persistence,
    rest_of_month_tasks,
    rmse,
    same_dates_last_year,
    same_weekdays_last_year,
    trailing_mean,
    week_one_year_ago,
    weekly_persistence,
)
from services.monthly.core.forecast import (
    DEFAULT_SETTINGS,
    ModelSettings,
    forecast_month,
    point_forecast,
)
from services.monthly.core.prophet_map import quiet_prophet_logging
from services.monthly.core.series import DailySeries

DATA_DIR: Final = Path(
    os.environ.get("WATTSTREAM_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)
UCI_FILE: Final = DATA_DIR / "uci_household_power_consumption.txt.gz"
LCL_DIR: Final = DATA_DIR / "lcl_daily_dataset"
BROWNLEE_GOAL: Final = 360.0
IMPROVEMENT_GOAL_PCT: Final = 15.0
BASELINES: Final = ("trailing_28d_mean", "same_dates_last_year", "same_weekdays_last_year")
_SINGLE_THREAD_ENV: Final = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

DEFAULT_PROPHET: Final = "default_prophet"
"""The reference configuration: ``Prophet()`` untouched, ``fit`` then ``predict``."""


# ---------------------------------------------------------------------------- helpers


def single_threaded_blas() -> None:
    """One BLAS thread per process: our matrices are tiny, and on two shared cores
    OpenBLAS's threads only fight each other (measured: the MAP fit 3x slower)."""
    for name in _SINGLE_THREAD_ENV:
        os.environ.setdefault(name, "1")


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (Stan runs as a subprocess)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def load_lcl_sample(
    lcl_dir: Path, households: int | None, seed: int
) -> tuple[list[DailySeries], int]:
    """A seeded sample of London households (None: all), and how many there are."""
    everything = [s for path in lcl_blocks(lcl_dir) for s in read_lcl_block(path)]
    ids = sorted(s.household_id for s in everything)
    if households is None or households >= len(ids):
        return sorted(everything, key=lambda s: s.household_id), len(ids)
    chosen = set(np.random.default_rng(seed).choice(ids, size=households, replace=False))
    sample = [s for s in everything if s.household_id in chosen]
    return sorted(sample, key=lambda s: s.household_id), len(ids)


def uci_series(uci_file: Path) -> DailySeries:
    """The UCI house as daily kW*min (Brownlee's units) with per-day coverage."""
    days, sums, coverage = uci_daily_kw_minutes(uci_file)
    return DailySeries.from_arrays("uci-sceaux", days, sums, coverage)


def default_prophet_rest(history: DailySeries, as_of: dt.date, days_left: int) -> float:
    """Prophet with default settings: fit on the usable history, predict the remaining days."""
    import pandas as pd
    from prophet import Prophet

    usable = history.usable()
    frame = pd.DataFrame(
        {"ds": history.dates[usable].astype("datetime64[ns]"), "y": history.kwh[usable]}
    )
    if days_left == 0:
        return 0.0
    model = Prophet().fit(frame)
    start = np.datetime64(as_of, "D") + np.timedelta64(1, "D")
    future = pd.DataFrame(
        {"ds": (start + np.arange(days_left).astype("timedelta64[D]")).astype("datetime64[ns]")}
    )
    return float(np.maximum(model.predict(future)["yhat"].to_numpy(), 0.0).sum())


# ----------------------------------------------------------------------- rest of month


def baseline_rests(history: DailySeries, task: RestOfMonthTask) -> dict[str, float]:
    """Every naive baseline's rest-of-month kWh (the last-year ones may fall back)."""
    n = task.days_left
    return {
        "trailing_28d_mean": trailing_mean(history, task.as_of, n),
        "same_dates_last_year": same_dates_last_year(history, task.as_of, n)[0],
        "same_weekdays_last_year": same_weekdays_last_year(history, task.as_of, n)[0],
    }


def rest_of_month_rows(
    series: DailySeries,
    year: int,
    dataset: str,
    configs: dict[str, ModelSettings | str],
) -> list[dict[str, Any]]:
    """One row per task: the truth, the baselines and every config's total, with CPU time."""
    rows: list[dict[str, Any]] = []
    warm: dict[str, dict[str, Any] | None] = dict.fromkeys(configs)
    for task in rest_of_month_tasks(series, year):
        history = task.history(series)
        row: dict[str, Any] = {
            "dataset": dataset,
            "household_id": task.household_id,
            "as_of": task.as_of.isoformat(),
            "actual": task.actual_total,
            **{
                name: task.actual_to_date + rest
                for name, rest in baseline_rests(history, task).items()
            },
        }
        for name, config in configs.items():
            started = cpu_seconds()
            if config == DEFAULT_PROPHET:
                row[name] = task.actual_to_date + default_prophet_rest(
                    history, task.as_of, task.days_left
                )
            else:
                assert isinstance(config, ModelSettings)
                result = forecast_month(
                    history, task.as_of, settings=config, warm_start=warm[name], checkpoint=False
                )
                f = result.forecast
                row[name] = f.month_total_kwh
                row[f"{name}:in80"] = (
                    f.month_total_lower_80 <= task.actual_total <= f.month_total_upper_80
                )
                row[f"{name}:in95"] = (
                    f.month_total_lower_95 <= task.actual_total <= f.month_total_upper_95
                )
                row[f"{name}:fallback"] = f.fallback_reason is not None
                if result.fit is not None:
                    row[f"{name}:iterations"] = result.fit.iterations
                warm[name] = result.params  # the service warm-starts from the last fit
            row[f"{name}:cpu"] = cpu_seconds() - started
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ weekly


def brownlee_rows(series: DailySeries, configs: dict[str, ModelSettings | str]) -> dict[str, Any]:
    """Brownlee's protocol: RMSE of every config and baseline, plus CPU per fit."""
    days, tasks = brownlee_weeks(series.dates, series.kwh)
    actual = np.concatenate([t.target for t in tasks])
    out: dict[str, Any] = {}
    baselines: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "week_one_year_ago": week_one_year_ago,
        "daily_persistence": daily_persistence,
        "weekly_persistence": weekly_persistence,
        "ar7": ar_forecast,
    }
    for name, method in baselines.items():
        out[name] = rmse(actual, np.concatenate([method(t.history) for t in tasks]))
    for name, config in configs.items():
        started = cpu_seconds()
        predictions = []
        warm: dict[str, Any] | None = None
        for task in tasks:
            history = DailySeries.from_arrays(
                series.household_id,
                days[: len(task.history)],
                task.history,
                np.ones(len(task.history)),
            )
            as_of = task.first_day - dt.timedelta(days=1)
            if config == DEFAULT_PROPHET:
                predictions.append(_default_prophet_days(history, as_of, 7))
                continue
            assert isinstance(config, ModelSettings)
            values, warm, _ = point_forecast(history, as_of, 7, settings=config, warm_start=warm)
            predictions.append(values)
        out[name] = rmse(actual, np.concatenate(predictions))
        out[f"{name}:cpu_per_fit"] = (cpu_seconds() - started) / len(tasks)
    return out


def _default_prophet_days(history: DailySeries, as_of: dt.date, horizon: int) -> np.ndarray:
    import pandas as pd
    from prophet import Prophet

    frame = pd.DataFrame({"ds": history.dates.astype("datetime64[ns]"), "y": history.kwh})
    model = Prophet().fit(frame)
    start = np.datetime64(as_of, "D") + np.timedelta64(1, "D")
    future = pd.DataFrame(
        {"ds": (start + np.arange(horizon).astype("timedelta64[D]")).astype("datetime64[ns]")}
    )
    return np.asarray(model.predict(future)["yhat"].to_numpy())


# --------------------------------------------------------------------------- execution


@dataclasses.dataclass(frozen=True)
class _Job:
    kind: str  # "brownlee", "rom"
    series: DailySeries
    year: int
    dataset: str
    configs: dict[str, ModelSettings | str]


def _run(job: _Job) -> tuple[str, Any]:
    quiet_prophet_logging()
    logging.getLogger("cmdstanpy").disabled = True
    if job.kind == "brownlee":
        return job.kind, brownlee_rows(job.series, job.configs)
    return job.kind, rest_of_month_rows(job.series, job.year, job.dataset, job.configs)


def run_jobs(jobs: Sequence[_Job], workers: int, progress: bool = True) -> list[tuple[str, Any]]:
    """Run the jobs on ``workers`` processes (1: in this process), biggest first."""
    ordered = sorted(jobs, key=lambda j: j.kind != "brownlee")
    results: list[tuple[str, Any]] = []
    started = time.perf_counter()
    if workers <= 1:
        iterator: Iterable[tuple[str, Any]] = map(_run, ordered)
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers)
        iterator = pool.imap_unordered(_run, ordered)
    try:
        for done, result in enumerate(iterator, 1):
            results.append(result)
            if progress and (done % 20 == 0 or done == len(ordered)):
                print(
                    f"  {done}/{len(ordered)} jobs, {time.perf_counter() - started:.0f} s",
                    flush=True,
                )
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return results


def mape_table(rows: list[dict[str, Any]], names: Sequence[str]) -> dict[str, float]:
    """MAPE (%) of the month total per method over ``rows``."""
    return {
        name: float(np.mean([ape(r["actual"], r[name]) for r in rows])) if rows else float("nan")
        for name in names
    }


def _fmt(value: float) -> str:
    return f"{value:8.2f}"


def report(
    brownlee: dict[str, Any], rows: list[dict[str, Any]], ours: str, meta: dict[str, Any]
) -> dict[str, Any]:
    """Print the side-by-side tables; return the JSON summary."""
    names = [ours, *BASELINES]
    print("\nBrownlee weekly protocol (UCI, 46 weeks x 7 days, RMSE in kW*min/day)")
    print(f"  {'method':28s} {'this run':>9s} {'reference':>10s}")
    refs = {**BROWNLEE_REFERENCES}
    for name in ("ours", "week_one_year_ago", "ar7", "daily_persistence", "weekly_persistence"):
        key = ours if name == "ours" else name
        ref = refs.get(name, float("nan"))
        print(f"  {name:28s} {brownlee[key]:9.1f} {ref:10.1f}")
    print(f"  {'best published (ConvLSTM)':28s} {'':>9s} {refs['best_published_convlstm']:10.1f}")
    print(f"  goal: < {BROWNLEE_GOAL:.0f}")

    by_dataset = {
        dataset: mape_table([r for r in rows if r["dataset"] == dataset], names)
        for dataset in sorted({r["dataset"] for r in rows})
    }
    pooled = mape_table(rows, names)
    print("\nRest-of-month total, MAPE % (as-of days 1, 8, 15, 22)")
    header = "".join(f"{d:>16s}" for d in [*by_dataset, "pooled"])
    print(f"  {'method':28s}{header}")
    for name in names:
        cells = "".join(f"{by_dataset[d][name]:16.2f}" for d in by_dataset)
        print(f"  {('ours' if name == ours else name):28s}{cells}{pooled[name]:16.2f}")
    counts = "".join(f"{sum(r['dataset'] == d for r in rows):16d}" for d in by_dataset)
    print(f"  {'forecasts':28s}{counts}{len(rows):16d}")
    best_name = min(BASELINES, key=lambda n: pooled[n])
    best = pooled[best_name]
    improvement = (best - pooled[ours]) / best * 100
    in80 = float(np.mean([r[f"{ours}:in80"] for r in rows]))
    in95 = float(np.mean([r[f"{ours}:in95"] for r in rows]))
    fallbacks = int(sum(r[f"{ours}:fallback"] for r in rows))
    print(
        f"  ours vs best naive ({best_name}): {improvement:.1f} % better "
        f"(goal >= {IMPROVEMENT_GOAL_PCT:.0f} %)"
    )
    print(
        f"  interval coverage of the month total: 80 % -> {in80 * 100:.1f} %, "
        f"95 % -> {in95 * 100:.1f} %; fallbacks {fallbacks}"
    )
    return {
        "brownlee_weekly_rmse": round(brownlee[ours], 1),
        "brownlee_baselines": {
            k: round(brownlee[k], 1)
            for k in ("week_one_year_ago", "ar7", "daily_persistence", "weekly_persistence")
        },
        "brownlee_references": BROWNLEE_REFERENCES,
        "brownlee_goal": BROWNLEE_GOAL,
        "rest_of_month_mape": round(pooled[ours], 2),
        "best_naive_rest_of_month_mape": round(best, 2),
        "best_naive": best_name,
        "rest_of_month_baselines": {n: round(pooled[n], 2) for n in BASELINES},
        "rest_of_month_by_dataset": {
            d: {("ours" if n == ours else n): round(v, 2) for n, v in t.items()}
            for d, t in by_dataset.items()
        },
        "improvement_over_best_naive_pct": round(improvement, 1),
        "improvement_goal_pct": IMPROVEMENT_GOAL_PCT,
        "interval_coverage_80": round(in80, 3),
        "interval_coverage_95": round(in95, 3),
        "fallbacks": fallbacks,
        "forecasts": len(rows),
        **meta,
    }


def tune_configs() -> dict[str, ModelSettings | str]:
    """The settings table's rows: Prophet's defaults, ours, then one change at a time."""
    base = DEFAULT_SETTINGS
    r = dataclasses.replace
    return {
        DEFAULT_PROPHET: DEFAULT_PROPHET,
        "ours (chosen)": base,
        "optimizer stan lbfgs": r(base, optimizer="stan", max_iter=10_000),
        "map tol 1e-4": r(base, tol=1e-4),
        "map tol 1e-6, 300 it": r(base, tol=1e-6, max_iter=300),
        "map max_iter 20": r(base, max_iter=20),
        "history 365 d": r(base, history_days=365),
        "history 730 d": r(base, history_days=730),
        "samples 0": r(base, uncertainty_samples=0),
        "samples 100": r(base, uncertainty_samples=100),
        "samples 200": r(base, uncertainty_samples=200),
        "samples 1000": r(base, uncertainty_samples=1000),
        "trend always extrapolated": r(base, trend="extrapolate"),
        "trend always held": r(base, trend="hold"),
        "level half-life 3 d": r(base, level_half_life_days=3.0),
        "level half-life 10 d": r(base, level_half_life_days=10.0),
        "residual scale 1.0": r(base, residual_scale=1.0),
        "residual scale 1.3": r(base, residual_scale=1.3),
    }


def tune_report(
    brownlee: dict[str, Any], rows: list[dict[str, Any]], configs: dict[str, ModelSettings | str]
) -> dict[str, Any]:
    """Print the settings table (same households, same run) and return it as JSON."""
    table = {}
    print(
        f"\n{'configuration':26s} {'MAPE %':>8s} {'in80 %':>7s} {'in95 %':>7s} "
        f"{'ms/fcst':>8s} {'Brownlee':>9s} {'ms/fit':>7s}"
    )
    for name in configs:
        mape = mape_table(rows, [name])[name]
        cpu = float(np.mean([r[f"{name}:cpu"] for r in rows])) * 1000
        in80 = float(np.mean([r.get(f"{name}:in80", np.nan) for r in rows])) * 100
        in95 = float(np.mean([r.get(f"{name}:in95", np.nan) for r in rows])) * 100
        weekly = brownlee.get(name, float("nan"))
        fit_ms = brownlee.get(f"{name}:cpu_per_fit", float("nan")) * 1000
        print(
            f"{name:26s} {mape:8.2f} {in80:7.1f} {in95:7.1f} {cpu:8.1f} {weekly:9.1f} {fit_ms:7.1f}"
        )
        table[name] = {
            "mape": round(mape, 3),
            "in80": round(in80, 1),
            "in95": round(in95, 1),
            "cpu_ms_per_forecast": round(cpu, 1),
            "brownlee_rmse": round(weekly, 1),
            "brownlee_cpu_ms_per_fit": round(fit_ms, 1),
        }
    naive = mape_table(rows, BASELINES)
    for name in BASELINES:
        print(f"{name:26s} {naive[name]:8.2f}")
    return {"tune": table, "baselines": {k: round(v, 3) for k, v in naive.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench accuracy-monthly")
    parser.add_argument(
        "--households",
        type=int,
        default=200,
        help="seeded sample of London households (0: all 5,566)",
    )
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--uci", type=Path, default=UCI_FILE)
    parser.add_argument("--lcl", type=Path, default=LCL_DIR)
    parser.add_argument(
        "--tune", action="store_true", help="print the settings table instead (default sample: 60)"
    )
    args = parser.parse_args(argv)
    single_threaded_blas()
    quiet_prophet_logging()
    started = time.perf_counter()
    households = args.households or None
    if args.tune and args.households == parser.get_default("households"):
        households = 60
    configs: dict[str, ModelSettings | str] = (
        tune_configs() if args.tune else {"ours": DEFAULT_SETTINGS}
    )
    uci = uci_series(args.uci)
    sample, total = load_lcl_sample(args.lcl, households, args.seed)
    print(
        f"accuracy-monthly: UCI {uci.start}..{uci.end}; London sample {len(sample)} of "
        f"{total} households (seed {args.seed}); {len(configs)} configuration(s); "
        f"{args.workers} workers"
    )
    jobs = [_Job("brownlee", uci, 0, "uci", configs), _Job("rom", uci, 2010, "uci_2010", configs)]
    jobs += [_Job("rom", s, 2013, "london_2013", configs) for s in sample]
    results = run_jobs(jobs, args.workers)
    brownlee = next(r for kind, r in results if kind == "brownlee")
    rows = [row for kind, r in results if kind == "rom" for row in r]
    meta = {
        "london_households": len(sample),
        "london_households_total": total,
        "seed": args.seed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.tune:
        summary = {**tune_report(brownlee, rows, configs), **meta}
    else:
        summary = report(brownlee, rows, "ours", meta)
    print(json.dumps(summary))
    return 0
