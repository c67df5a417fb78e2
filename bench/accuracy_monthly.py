"""Monthly backtests: our model and the naive rules side by side, in one run.

``python -m bench accuracy-monthly [--households N] [--short-households N]
[--as-of-days 1,8,15,22] [--year 2013] [--seed S] [--workers W] [--retrain-months 3]
[--cache DIR] [--tune]``

1. **Brownlee's weekly protocol** on the full UCI file (46 test weeks of 7-day
   walk-forward, train up to 2010-01-02, RMSE in his units, kW*min per day; see
   :mod:`services.monthly.core.backtest` for the aggregation, which reproduces his
   week-one-year-ago 465.294 exactly). Our model is refitted every week, warm-started
   from the previous week's fit, as the service does. Baselines measured in the same run:
   week-one-year-ago, daily and weekly persistence, AR(7) by least squares.
2. **Rest of month**: every eligible month of 2010 in the UCI data (January..October;
   November ends on the 26th) and of ``--year`` (2013) in a seeded sample of London
   households (``--households``, default 200 of 5,566), as of each of ``--as-of-days``.
   The UCI truth is Brownlee's gap-filled series. MAPE of the month total for ours, for
   Prophet alone (the seed's model) and for each naive rule (trailing 28-day mean,
   same-weekday mean of the last 4 weeks, last year's same weekdays scaled by this
   year's last 28 days over last year's); the best rule (lowest MAPE on the same
   forecasts), the improvement over it, the **win rate** (share of forecasts whose
   error is below that rule's) and the 80 %/95 % **coverage** of ours; pooled, per
   data set, and for the London households no fleet model trained on.
3. **Short history**: ``--short-households`` new London households (seeded), as of
   their 7th, 10th, 14th, 21st, ..., 56th day of data (the month counted from their
   first day), the same figures.

4. **Where the error sits** (JSON ``ceiling``): the London forecasts' MAPE had each
   known the month's common shock (an oracle, :func:`common_shock_mape`), and how much
   the remaining days' own noise moves the month total (:func:`noise_floor_pct`).

Every forecast's row (truth, baselines, ours, Prophet alone, the fleet model alone with
its calibrated band) is kept in ``--cache``/``last-rows.json``: the blend weights of
:class:`~services.monthly.core.forecast.ModelSettings` were read off a 2012 validation
run's rows (see the README), never off the 2013 test months. JSON ``previous_blend``: the
fixed blend shipped before the span rule (:data:`PREVIOUS_BLEND`), rebuilt from the same
rows (the row's ``level`` is the blend's third partner), to compare in the same run.

**Honest splits.** The fleet model is trained every ``--retrain-months`` months from
2012-07-01 on, each time only on months that end before that day
(:func:`services.monthly.training.train`, 20 % of households held out by hash); a London
forecast as of day D uses the newest model trained before D. UCI (one house in France,
2010) gets the earliest London model: its data are later in time but share no weather
or households with UCI. Trained models and their samples are cached in ``--cache``
(keyed by the data files, the features and the options).

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
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from services.monthly.adapters.datasets import lcl_blocks, read_lcl_block, uci_daily_kw_minutes
from services.monthly.core.backtest import (
    BROWNLEE_REFERENCES,
    ORIGINS,
    SHORT_HISTORY_DAYS,
    RestOfMonthTask,
    ape,
    ar_forecast,
    brownlee_weeks,
    daily_persistence,
    last_year_scaled,
    rest_of_month_tasks,
    rmse,
    same_weekday_mean,
    short_history_tasks,
    trailing_mean,
    week_one_year_ago,
    weekly_persistence,
)
from services.monthly.core.fleet_model import FEATURES, FleetModel, situation, span_months
from services.monthly.core.forecast import (
    DEFAULT_SETTINGS,
    ModelSettings,
    forecast_month,
    point_forecast,
)
from services.monthly.core.prophet_map import quiet_prophet_logging
from services.monthly.core.series import DailySeries, month_end
from services.monthly.training import (
    SampleSet,
    TrainOptions,
    household_split,
    read_household_info,
    sample_dataset,
    train,
)

DATA_DIR: Final = Path(
    os.environ.get("WATTSTREAM_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)
UCI_FILE: Final = DATA_DIR / "uci_household_power_consumption.txt.gz"
LCL_DIR: Final = DATA_DIR / "lcl_daily_dataset"
BROWNLEE_GOAL: Final = 360.0
IMPROVEMENT_GOAL_PCT: Final = 15.0
INFO_FILE: Final = DATA_DIR / "lcl_informations_households.csv.gz"
CACHE_DIR: Final = (
    Path(os.environ.get("WATTSTREAM_CACHE_DIR", Path.home() / ".cache" / "wattstream"))
    / "accuracy-monthly"
)
BASELINES: Final = ("trailing_28d_mean", "same_weekday_4w_mean", "last_year_scaled")
FIRST_UNTIL: Final = dt.date(2012, 7, 1)
"""The first fleet model's cut-off: London data starts 2011-11-23; a model needs a few
months to train on and three more to be calibrated on."""
LAST_UNTIL: Final = dt.date(2014, 1, 1)
PROPHET_ALONE: Final = dataclasses.replace(DEFAULT_SETTINGS, use_fleet=False)
"""The seed's model (Prophet with its own intervals), reported next to ours."""
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


def load_lcl(lcl_dir: Path) -> tuple[list[DailySeries], int]:
    """Every London household, and how many there are."""
    everything = [s for path in lcl_blocks(lcl_dir) for s in read_lcl_block(path)]
    return everything, len(everything)


def choose(
    everything: Sequence[DailySeries], households: int | None, seed: int
) -> list[DailySeries]:
    """A seeded sample of households (None: all), sorted by id."""
    ids = sorted(s.household_id for s in everything)
    if households is None or households >= len(ids):
        return sorted(everything, key=lambda s: s.household_id)
    chosen = set(np.random.default_rng(seed).choice(ids, size=households, replace=False))
    return sorted((s for s in everything if s.household_id in chosen), key=lambda s: s.household_id)


def load_lcl_sample(
    lcl_dir: Path, households: int | None, seed: int
) -> tuple[list[DailySeries], int]:
    """A seeded sample of London households (None: all), and how many there are."""
    everything, total = load_lcl(lcl_dir)
    return choose(everything, households, seed), total


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


# ------------------------------------------------------------------------ fleet models


@dataclasses.dataclass(frozen=True)
class FleetModels:
    """The fleet models of one run, each trained only on months that end before its
    ``until`` day; a forecast as of day D uses the newest one with ``until <= D``.

    ``paths``: (until, artifact file) sorted by day. Loaded lazily in each worker.
    ``holdout``: the share of households no model trained on (by stable hash, seed).
    """

    paths: tuple[tuple[dt.date, str], ...]
    seed: int
    holdout: float

    def for_day(self, as_of: dt.date) -> FleetModel | None:
        usable = [path for until, path in self.paths if until <= as_of]
        return _load_model(usable[-1]) if usable else None

    def earliest(self) -> FleetModel | None:
        return _load_model(self.paths[0][1]) if self.paths else None

    def unseen(self, household_id: str) -> bool:
        return household_split(household_id, self.seed) < self.holdout


@functools.lru_cache(maxsize=32)
def _load_model(path: str) -> FleetModel:
    return FleetModel.from_json(Path(path).read_text())


def retrain_days(first: dt.date, last: dt.date, months: int) -> list[dt.date]:
    """The first day of every ``months``-th month from ``first`` up to ``last``."""
    days, day = [], first.replace(day=1)
    while day <= last:
        days.append(day)
        index = day.month - 1 + months
        day = dt.date(day.year + index // 12, index % 12 + 1, 1)
    return days


def fleet_models(
    lcl_dir: Path,
    info_file: Path,
    cache: Path,
    untils: Sequence[dt.date],
    options: TrainOptions,
    workers: int,
    max_blocks: int | None = None,
) -> FleetModels:
    """Train (or reuse from ``cache``) one fleet model per ``until`` day, with progress.

    The cache key is the data files (names and sizes), the features and the options, so
    a change of any of them retrains.
    """
    from services.monthly.adapters.datasets import lcl_blocks

    files = [*lcl_blocks(lcl_dir)[:max_blocks], info_file]
    key_text = json.dumps(
        [
            [(f.name, f.stat().st_size) for f in files],
            FEATURES,
            dataclasses.asdict(dataclasses.replace(options, until=None)),
        ],
        default=str,
    )
    key = hashlib.sha256(key_text.encode()).hexdigest()[:12]
    folder = cache / key
    folder.mkdir(parents=True, exist_ok=True)
    samples_file = folder / "samples.npz"
    samples: SampleSet | None = None
    paths = []
    for until in sorted(untils):
        path = folder / f"fleet-until-{until}.json"
        if not path.exists():
            if samples is None:
                samples = _samples(lcl_dir, info_file, samples_file, options, workers, max_blocks)
            print(f"  training the fleet model on months before {until} ...", flush=True)
            started = time.perf_counter()
            model = train(samples, dataclasses.replace(options, until=until))
            tmp = path.with_suffix(".tmp")
            tmp.write_text(model.to_json())
            tmp.replace(path)
            print(
                f"    {model.meta['samples_train']:,} samples of "
                f"{model.meta['households_train']:,} households, "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )
        elif "span_months" not in json.loads(path.read_text()).get("meta", {}):
            # cached before the span was recorded: add it (the blend weights depend on it)
            if samples is None:
                samples = _samples(lcl_dir, info_file, samples_file, options, workers, max_blocks)
            _record_span(path, samples, until)
        paths.append((until, str(path)))
    return FleetModels(tuple(paths), options.seed, options.holdout)


def _record_span(path: Path, samples: SampleSet, until: dt.date) -> None:
    """Add ``first_month_end``/``span_months`` to a cached model trained before they
    were recorded (the first month of its samples before ``until``)."""
    data = json.loads(path.read_text())
    first = str(samples.month_end[samples.month_end < np.datetime64(until, "D")].min())
    data["meta"]["first_month_end"] = first
    data["meta"]["span_months"] = span_months(first, data["meta"]["last_month_end"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _samples(
    lcl_dir: Path,
    info_file: Path,
    path: Path,
    options: TrainOptions,
    workers: int,
    max_blocks: int | None = None,
) -> SampleSet:
    if path.exists():
        return SampleSet.load(path)
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 14 == 0 or done == total:
            print(
                f"  fleet samples: {done}/{total} blocks, {time.perf_counter() - started:.0f} s",
                flush=True,
            )

    samples = sample_dataset(
        lcl_dir,
        read_household_info(info_file),
        options,
        workers=workers,
        on_block=progress,
        max_blocks=max_blocks,
    )
    samples.save(path)
    return samples


# ----------------------------------------------------------------------- rest of month


def baseline_rests(history: DailySeries, task: RestOfMonthTask) -> dict[str, float]:
    """Every naive rule's rest-of-month kWh (last year's falls back to the trailing mean)."""
    n = task.days_left
    return {
        "trailing_28d_mean": trailing_mean(history, task.as_of, n),
        "same_weekday_4w_mean": same_weekday_mean(history, task.as_of, n),
        "last_year_scaled": last_year_scaled(history, task.as_of, n)[0],
    }


def rest_of_month_rows(
    series: DailySeries,
    tasks: Sequence[RestOfMonthTask],
    dataset: str,
    configs: dict[str, ModelSettings | str],
    models: FleetModels | None,
) -> list[dict[str, Any]]:
    """One row per task: the truth, the baselines and every config's total, with CPU time.

    The fleet model of a London task is the newest trained before its as-of day; UCI
    (another country, 2010) gets the earliest one (see the module docstring).
    """
    rows: list[dict[str, Any]] = []
    warm: dict[str, dict[str, Any] | None] = dict.fromkeys(configs)
    for task in tasks:
        history = task.history(series)
        if models is None:
            fleet = None
        elif dataset.startswith("uci"):
            fleet = models.earliest()
        else:
            fleet = models.for_day(task.as_of)
        row: dict[str, Any] = {
            "dataset": dataset,
            "household_id": task.household_id,
            "as_of": task.as_of.isoformat(),
            "days_left": task.days_left,
            "history_days": int(history.usable().sum()),
            "unseen": models.unseen(task.household_id) if models else True,
            "actual": task.actual_total,
            "actual_to_date": task.actual_to_date,
            **{
                name: task.actual_to_date + rest
                for name, rest in baseline_rests(history, task).items()
            },
        }
        if fleet is not None:  # the fleet model alone (no Prophet), for the blend sweep
            started = cpu_seconds()
            s = situation(history, task.as_of)
            if s is not None:
                q = fleet.quantiles(s.x, [s.usable_days])[0]
                row["fleet"] = task.actual_to_date + s.base * q[2] * task.days_left
                # its calibrated month-total band (2.5/10/50/90/97.5 %), to study blends
                row["fleet:q"] = [task.actual_to_date + s.base * v * task.days_left for v in q]
                # the household's recent level (the blend's third partner) and the span
                row["level"] = task.actual_to_date + s.base * float(s.shape.sum())
                row["fleet:span"] = fleet.span_months
                row["fleet:cpu"] = cpu_seconds() - started
        for name, config in configs.items():
            started = cpu_seconds()
            if config == DEFAULT_PROPHET:
                row[name] = task.actual_to_date + default_prophet_rest(
                    history, task.as_of, task.days_left
                )
            else:
                assert isinstance(config, ModelSettings)
                result = forecast_month(
                    history,
                    task.as_of,
                    settings=config,
                    warm_start=warm[name],
                    checkpoint=False,
                    fleet=fleet,
                )
                f = result.forecast
                row[name] = f.month_total_kwh
                row[f"{name}:in80"] = (
                    f.month_total_lower_80 <= task.actual_total <= f.month_total_upper_80
                )
                row[f"{name}:in95"] = (
                    f.month_total_lower_95 <= task.actual_total <= f.month_total_upper_95
                )
                row[f"{name}:bounds"] = [
                    f.month_total_lower_95,
                    f.month_total_lower_80,
                    f.month_total_upper_80,
                    f.month_total_upper_95,
                ]
                row[f"{name}:fallback"] = f.fallback_reason is not None
                row[f"{name}:model"] = f.model_version
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
    tasks: tuple[RestOfMonthTask, ...]
    dataset: str
    configs: dict[str, ModelSettings | str]
    models: FleetModels | None


def _run(job: _Job) -> tuple[str, Any]:
    quiet_prophet_logging()
    logging.getLogger("cmdstanpy").disabled = True
    if job.kind == "brownlee":
        return job.kind, brownlee_rows(job.series, job.configs)
    return job.kind, rest_of_month_rows(job.series, job.tasks, job.dataset, job.configs, job.models)


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


def summarize(rows: list[dict[str, Any]], ours: str) -> dict[str, Any]:
    """The issue's figures for one set of forecasts: ours against the best naive rule.

    The best naive rule is the one with the lowest MAPE on these rows; the win rate is
    the share of forecasts whose error is below that rule's on the same forecast.
    """
    if not rows:
        return {"forecasts": 0}
    table = mape_table(rows, [ours, *BASELINES])
    best_name = min(BASELINES, key=lambda n: table[n])
    best = table[best_name]
    wins = [ape(r["actual"], r[ours]) < ape(r["actual"], r[best_name]) for r in rows]
    out: dict[str, Any] = {
        "rest_of_month_mape": round(table[ours], 2),
        "best_naive": best_name,
        "best_naive_rest_of_month_mape": round(best, 2),
        "improvement_over_best_naive_pct": round((best - table[ours]) / best * 100, 1)
        if best > 0
        else 0.0,
        "win_rate": round(float(np.mean(wins)), 3),
        "coverage_80": round(float(np.mean([r[f"{ours}:in80"] for r in rows])), 3),
        "coverage_95": round(float(np.mean([r[f"{ours}:in95"] for r in rows])), 3),
        "rest_of_month_baselines": {n: round(table[n], 2) for n in BASELINES},
        "forecasts": len(rows),
        "households": len({r["household_id"] for r in rows}),
    }
    for name in sorted({k.split(":")[0] for r in rows for k in r if k.endswith(":cpu")} - {ours}):
        having = [r for r in rows if name in r]
        out[f"{name}_rest_of_month_mape"] = round(mape_table(having, [name])[name], 2)
        if len(having) < len(rows):
            out[f"{name}_forecasts"] = len(having)
    return out


def common_shock_mape(rows: list[dict[str, Any]], name: str) -> float:
    """MAPE of ``name`` had it known the month's common shock: each forecast's rest of
    month scaled by the median actual/forecast ratio of the rest of the *other*
    households on the same as-of day (an oracle: it reads their futures).

    Why: how much of the error is what every household shares that month (weather,
    holidays of that year), which no history before the as-of day contains.
    """
    by_day: dict[str, list[tuple[str, float]]] = {}
    for r in rows:
        if name in r and r[name] - r["actual_to_date"] > 0:
            rest = r[name] - r["actual_to_date"]
            ratio = (r["actual"] - r["actual_to_date"]) / rest
            by_day.setdefault(r["as_of"], []).append((r["household_id"], ratio))
    errors = []
    for r in rows:
        others = [x for h, x in by_day.get(r["as_of"], []) if h != r["household_id"]]
        if name not in r or not others:
            continue
        shock = float(np.median(others))
        errors.append(
            ape(r["actual"], r["actual_to_date"] + (r[name] - r["actual_to_date"]) * shock)
        )
    return float(np.mean(errors)) if errors else float("nan")


def noise_floor_pct(
    rows: list[dict[str, Any]], series: dict[str, DailySeries], block_days: int
) -> float:
    """The share of the month total (%) that the remaining days' own noise moves it by:
    the remaining days split into alternate blocks of ``block_days`` days (1: odd and
    even days), half the difference of the two halves' means times the days left,
    over the month total (rows with at least two blocks each).

    Why: both halves share the household's level and the month's shock, so their
    difference is noise that no forecast of the level can predict; with blocks of a
    week it keeps the errors' dependence within a week (absences, guests).
    """
    out = []
    for r in rows:
        as_of = dt.date.fromisoformat(r["as_of"])
        s = series.get(r["household_id"])
        if s is None:
            continue
        rest = s.between(as_of + dt.timedelta(days=1), month_end(as_of)).kwh
        n = len(rest) // (2 * block_days) * 2 * block_days
        if not n or not np.all(np.isfinite(rest[:n])):
            continue
        half = np.arange(n) // block_days % 2
        gap = abs(rest[:n][half == 0].mean() - rest[:n][half == 1].mean())
        out.append(gap / 2 * len(rest) / r["actual"] * 100)
    return float(np.mean(out)) if out else float("nan")


def ceiling(
    rows: list[dict[str, Any]], series: dict[str, DailySeries], ours: str
) -> dict[str, Any]:
    """Where the month-total error sits (London rows): MAPE with the month's common
    shock known (an oracle), and the day-to-day and week-to-week noise floors."""
    rows = [r for r in rows if r["dataset"].startswith("london") and "actual_to_date" in r]
    if not rows:
        return {}
    names = [ours, "trailing_28d_mean", "fleet"]
    return {
        "mape": {n: round(mape_table([r for r in rows if n in r], [n])[n], 2) for n in names},
        "mape_common_shock_known": {n: round(common_shock_mape(rows, n), 2) for n in names},
        "noise_floor_daily_pct": round(noise_floor_pct(rows, series, 1), 2),
        "noise_floor_weekly_pct": round(noise_floor_pct(rows, series, 7), 2),
        "mape_14_days_left": {  # the rows the weekly floor is measured on
            n: round(mape_table(long, [n])[n], 2)
            for n in names
            if (long := [r for r in rows if n in r and r["days_left"] >= 14])
        },
        "forecasts": len(rows),
    }


def print_ceiling(c: dict[str, Any]) -> None:
    if not c:
        return
    print(f"\nWhere the error sits (London, {c['forecasts']} forecasts), MAPE %")
    for name, value in c["mape"].items():
        known = c["mape_common_shock_known"][name]
        print(
            f"  {name:22s} {value:6.2f}  with the month's common shock known (oracle) {known:6.2f}"
        )
    print(
        f"  noise floor: odd/even remaining days {c['noise_floor_daily_pct']:.2f} % of the "
        f"month total, alternate weeks {c['noise_floor_weekly_pct']:.2f} % (forecasts with "
        f">= 14 days left; ours {c['mape_14_days_left'].get('ours', float('nan')):.2f} % on them)"
    )


def blend_sweep(rows: list[dict[str, Any]]) -> dict[float, float]:
    """Pooled MAPE of Prophet blended with the fleet model alone at other weights (the
    blend is linear in the totals), over histories of ``fleet_short_days`` or more."""
    chosen = [
        r
        for r in rows
        if "prophet" in r
        and "fleet" in r
        and r["history_days"] >= DEFAULT_SETTINGS.fleet_short_days
    ]
    if not chosen:
        return {}
    return {
        w: float(
            np.mean([ape(r["actual"], w * r["fleet"] + (1 - w) * r["prophet"]) for r in chosen])
        )
        for w in (0.0, 0.25, 0.5, 0.75, 1.0)
    }


PREVIOUS_BLEND: Final = ((0.0, 0.0), (0.2, 0.4), (0.25, 0.75))
"""The fixed blend shipped before the span rule, (fleet, Prophet) weights for < 28,
28-60 and >= 61 days of history (the rest the recent level): reported next to ours."""


def previous_blend(rows: list[dict[str, Any]], ours: str) -> dict[str, Any]:
    """MAPE and win rate of :data:`PREVIOUS_BLEND` on the same forecasts (the blend is
    linear in the totals, so it is rebuilt from each row's fleet, Prophet and level)."""
    rebuilt = []
    for r in rows:
        total = r[ours]
        if "fleet" in r and "level" in r and "prophet" in r:
            h = r["history_days"]
            prophet_fitted = not r.get("prophet:fallback", True)
            if not prophet_fitted or h < DEFAULT_SETTINGS.min_history_days:
                wf, wp = PREVIOUS_BLEND[0]
            elif h < DEFAULT_SETTINGS.fleet_short_days:
                wf, wp = PREVIOUS_BLEND[1]
            else:
                wf, wp = PREVIOUS_BLEND[2]
            total = wf * r["fleet"] + wp * r["prophet"] + (1 - wf - wp) * r["level"]
        rebuilt.append(total)
    if not rebuilt:
        return {"forecasts": 0}
    table = mape_table(rows, BASELINES)
    best_name = min(BASELINES, key=lambda n: table[n])
    best = table[best_name]
    errors = [ape(r["actual"], total) for r, total in zip(rows, rebuilt, strict=True)]
    mape = float(np.mean(errors))
    wins = [e < ape(r["actual"], r[best_name]) for r, e in zip(rows, errors, strict=True)]
    return {
        "rest_of_month_mape": round(mape, 2),
        "best_naive": best_name,
        "best_naive_rest_of_month_mape": round(best, 2),
        "improvement_over_best_naive_pct": round((best - mape) / best * 100, 1)
        if best > 0
        else 0.0,
        "win_rate": round(float(np.mean(wins)), 3),
        "forecasts": len(rows),
    }


def _line(label: str, s: dict[str, Any]) -> str:
    if not s.get("forecasts"):
        return f"  {label:26s} {'no forecasts':>8s}"
    return (
        f"  {label:26s} {s['rest_of_month_mape']:8.2f} {s['best_naive_rest_of_month_mape']:8.2f} "
        f"{s['best_naive']:>22s} {s['improvement_over_best_naive_pct']:7.1f} "
        f"{s['win_rate'] * 100:6.1f} {s['coverage_80'] * 100:6.1f} {s['coverage_95'] * 100:6.1f} "
        f"{s['forecasts']:7d}"
    )


def report(
    brownlee: dict[str, Any],
    rows: list[dict[str, Any]],
    short_rows: list[dict[str, Any]],
    ours: str,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Print the side-by-side tables; return the JSON summary."""
    print("\nBrownlee weekly protocol (UCI, 46 weeks x 7 days, RMSE in kW*min/day)")
    print(f"  {'method':28s} {'this run':>9s} {'reference':>10s}")
    refs = {**BROWNLEE_REFERENCES}
    for name in ("ours", "week_one_year_ago", "ar7", "daily_persistence", "weekly_persistence"):
        key = ours if name == "ours" else name
        ref = refs.get(name, float("nan"))
        print(f"  {name:28s} {brownlee[key]:9.1f} {ref:10.1f}")
    print(f"  {'best published (ConvLSTM)':28s} {'':>9s} {refs['best_published_convlstm']:10.1f}")
    print(f"  goal: < {BROWNLEE_GOAL:.0f}")

    pooled = summarize(rows, ours)
    by_dataset = {
        d: summarize([r for r in rows if r["dataset"] == d], ours)
        for d in sorted({r["dataset"] for r in rows})
    }
    unseen = summarize([r for r in rows if r["dataset"].startswith("london") and r["unseen"]], ours)
    short = summarize(short_rows, ours)
    short_unseen = summarize([r for r in short_rows if r["unseen"]], ours)
    days = ", ".join(str(d) for d in meta["as_of_days"])
    print(
        f"\nMonth total, MAPE % (as-of days {days}; short history: days "
        f"{', '.join(str(d) for d in meta['short_history_days'])} of a new household)"
    )
    print(
        f"  {'forecasts':26s} {'ours':>8s} {'naive':>8s} {'best naive rule':>22s} "
        f"{'better%':>7s} {'win%':>6s} {'in80%':>6s} {'in95%':>6s} {'count':>7s}"
    )
    for d, summary in by_dataset.items():
        print(_line(d, summary))
    print(_line("london, unseen households", unseen))
    print(_line("pooled", pooled))
    print(_line("short history (London)", short))
    print(_line("short history, unseen", short_unseen))
    for name in ("prophet",):
        key = f"{name}_rest_of_month_mape"
        if key in pooled:
            print(
                f"  {name} alone (the seed's model): pooled {pooled[key]:.2f} %, "
                f"short history {short.get(key, float('nan')):.2f} %"
            )
    print(
        f"  goals: >= {IMPROVEMENT_GOAL_PCT:.0f} % better than the best naive, win rate >= 60 %, "
        "in80 80 +/- 5 %, in95 95 +/- 3 %"
    )
    sweep = blend_sweep(rows)
    if sweep:
        cells = ", ".join(f"{w:.2f} -> {m:.2f} %" for w, m in sweep.items())
        print(f"  fleet weight for >= {DEFAULT_SETTINGS.fleet_short_days} days of history: {cells}")
    previous = previous_blend(rows, ours)
    previous_short = previous_blend(short_rows, ours)
    if previous.get("forecasts"):
        print(
            "  previous fixed blend, same forecasts: pooled "
            f"{previous['rest_of_month_mape']:.2f} % "
            f"({previous['improvement_over_best_naive_pct']:.1f} % better, win "
            f"{previous['win_rate'] * 100:.1f} %), short history "
            f"{previous_short.get('rest_of_month_mape', float('nan')):.2f} %"
        )
    fallbacks = int(sum(r[f"{ours}:fallback"] for r in rows))
    return {
        "previous_blend": {**previous, "short_history": previous_short},
        "fleet_weight_sweep_mape": {f"{w:.2f}": round(m, 2) for w, m in sweep.items()},
        "brownlee_weekly_rmse": round(brownlee[ours], 1),
        "brownlee_baselines": {
            k: round(brownlee[k], 1)
            for k in ("week_one_year_ago", "ar7", "daily_persistence", "weekly_persistence")
        },
        "brownlee_references": BROWNLEE_REFERENCES,
        "brownlee_goal": BROWNLEE_GOAL,
        "rest_of_month_mape": pooled["rest_of_month_mape"],
        "best_naive_rest_of_month_mape": pooled["best_naive_rest_of_month_mape"],
        "best_naive": pooled["best_naive"],
        "rest_of_month_baselines": pooled["rest_of_month_baselines"],
        "rest_of_month_by_dataset": by_dataset,
        "london_unseen": unseen,
        "improvement_over_best_naive_pct": pooled["improvement_over_best_naive_pct"],
        "improvement_goal_pct": IMPROVEMENT_GOAL_PCT,
        "win_rate": pooled["win_rate"],
        "coverage_80": pooled["coverage_80"],
        "coverage_95": pooled["coverage_95"],
        "interval_coverage_80": pooled["coverage_80"],
        "interval_coverage_95": pooled["coverage_95"],
        "short_history": {**short, "unseen": short_unseen},
        "prophet_rest_of_month_mape": pooled.get("prophet_rest_of_month_mape"),
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


def _days(text: str) -> tuple[int, ...]:
    try:
        days = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"{text!r}: comma-separated days, e.g. 1,8,15,22"
        ) from error
    if not days or days[0] < 1 or days[-1] > 31:
        raise argparse.ArgumentTypeError(f"{text!r}: days of the month are 1..31")
    return days


def short_history_sample(
    lcl: Sequence[DailySeries], size: int, seed: int, first_until: dt.date
) -> list[DailySeries]:
    """New households for the short-history protocol: a seeded choice among those whose
    data starts when a fleet model trained on earlier months exists."""
    eligible = sorted((s for s in lcl if s.start >= first_until), key=lambda s: s.household_id)
    if size >= len(eligible):
        return eligible
    picks = np.random.default_rng(seed + 1).choice(len(eligible), size=size, replace=False)
    return [eligible[i] for i in sorted(picks)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench accuracy-monthly")
    parser.add_argument(
        "--households",
        type=int,
        default=200,
        help="seeded sample of London households (0: all 5,566)",
    )
    parser.add_argument(
        "--short-households",
        type=int,
        default=200,
        help="seeded sample of new London households for the short-history protocol",
    )
    parser.add_argument(
        "--as-of-days",
        type=_days,
        default=ORIGINS,
        help="as-of days of the month, comma-separated (default 1,8,15,22)",
    )
    parser.add_argument(
        "--year",
        type=int,
        default=2013,
        help="London year of the main protocol (2012 for validation: 2013 is the test)",
    )
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--uci", type=Path, default=UCI_FILE)
    parser.add_argument("--lcl", type=Path, default=LCL_DIR)
    parser.add_argument("--info", type=Path, default=INFO_FILE)
    parser.add_argument(
        "--retrain-months",
        type=int,
        default=3,
        help="a fleet model is trained every this many months, on earlier months only",
    )
    parser.add_argument(
        "--fleet-blocks",
        type=int,
        default=None,
        help="train the fleet models on the first N LCL blocks only (~50 households each; "
        "a quick run); default: all 112",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=CACHE_DIR,
        help="where trained fleet models and their samples are kept between runs",
    )
    parser.add_argument(
        "--tune", action="store_true", help="print the settings table instead (default sample: 60)"
    )
    args = parser.parse_args(argv)
    for path in (args.uci, args.lcl, args.info):
        if not path.exists():
            print(f"accuracy-monthly: {path} not found", file=sys.stderr)
            return 2
    single_threaded_blas()
    quiet_prophet_logging()
    started = time.perf_counter()
    households = args.households or None
    if args.tune and args.households == parser.get_default("households"):
        households = 60
    configs: dict[str, ModelSettings | str] = (
        tune_configs() if args.tune else {"ours": DEFAULT_SETTINGS, "prophet": PROPHET_ALONE}
    )
    uci = uci_series(args.uci)
    everything, total = load_lcl(args.lcl)
    sample = choose(everything, households, args.seed)
    untils = retrain_days(FIRST_UNTIL, LAST_UNTIL, args.retrain_months)
    short = short_history_sample(everything, args.short_households, args.seed, untils[0])
    print(
        f"accuracy-monthly: UCI {uci.start}..{uci.end}; London sample {len(sample)} of "
        f"{total} households (seed {args.seed}), {len(short)} new households; "
        f"as-of days {','.join(map(str, args.as_of_days))}; {len(configs)} configuration(s); "
        f"{args.workers} workers"
    )
    models = fleet_models(
        args.lcl, args.info, args.cache, untils, TrainOptions(), args.workers, args.fleet_blocks
    )
    origins = args.as_of_days
    jobs = [_Job("brownlee", uci, (), "uci", configs, models)]
    jobs.append(
        _Job(
            "rom",
            uci,
            tuple(rest_of_month_tasks(uci, 2010, origins=origins)),
            "uci_2010",
            configs,
            models,
        )
    )
    jobs += [
        _Job(
            "rom",
            s,
            tuple(rest_of_month_tasks(s, args.year, origins=origins)),
            f"london_{args.year}",
            configs,
            models,
        )
        for s in sample
    ]
    jobs += [
        _Job("rom", s, tuple(short_history_tasks(s)), "short_history", configs, models)
        for s in short
    ]
    results = run_jobs(jobs, args.workers)
    brownlee = next(r for kind, r in results if kind == "brownlee")
    rows = [row for kind, r in results if kind == "rom" for row in r]
    args.cache.mkdir(parents=True, exist_ok=True)
    (args.cache / "last-rows.json").write_text(json.dumps(rows))  # to re-read, not rerun
    main_rows = [r for r in rows if r["dataset"] != "short_history"]
    short_rows = [r for r in rows if r["dataset"] == "short_history"]
    meta = {
        "as_of_days": list(origins),
        "short_history_days": list(SHORT_HISTORY_DAYS),
        "london_households": len(sample),
        "london_households_total": total,
        "fleet_models_until": [u.isoformat() for u in untils],
        "seed": args.seed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.tune:
        summary = {**tune_report(brownlee, main_rows, configs), **meta}
    else:
        summary = report(brownlee, main_rows, short_rows, "ours", meta)
        summary["ceiling"] = ceiling(main_rows, {s.household_id: s for s in sample}, "ours")
        print_ceiling(summary["ceiling"])
    print(json.dumps(summary))
    return 0
