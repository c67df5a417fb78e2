"""The fleet command's driver: a rest-of-month forecast for every household of a data set.

``run_fleet(data_dir, out_dir)`` reads the London LCL ``daily_dataset`` blocks and
forecasts every household (5,566) with the service's own core
(:func:`~services.monthly.core.forecast.forecast_month`), writing the same objects the
Lambda writes, under the same keys, into ``out_dir`` (forecast JSON, checkpoint, and the
components plot's data if asked): syncing ``out_dir`` to the models bucket bootstraps the
service, whose next fit then warm-starts from these checkpoints.

Why blocks as the unit of work: a block file holds ~50 households and is read by the
worker that forecasts them, so the parent never parses or pickles the data, reading is
parallel too, and a worker's memory stays one block. Workers are processes
(``multiprocessing``, spawn-safe), one per core by default; progress is reported per
finished block through ``on_progress``.

As-of day per household: its newest *final* day (the service's rule, see
:mod:`services.monthly.core.debounce`) on or before ``as_of`` (default: its last day).
Households with short or broken histories get the fallback model and say so; the report
counts them by reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from services.monthly.adapters.datasets import lcl_block_ids, lcl_blocks, read_lcl_block
from services.monthly.adapters.local import LocalResultStore
from services.monthly.core.debounce import (
    DEFAULT_FINAL_COVERAGE,
    input_fingerprint,
    target_day,
)
from services.monthly.core.forecast import DEFAULT_SETTINGS, ModelSettings, forecast_month
from services.monthly.core.plot import components_document
from services.monthly.core.prophet_map import quiet_prophet_logging
from services.monthly.core.series import DailySeries

__all__ = ["FleetProgress", "FleetReport", "HouseholdRun", "forecast_one", "run_fleet"]


@dataclass(frozen=True)
class FleetProgress:
    """Where a fleet run is: blocks and households done so far, seconds since start."""

    blocks_done: int
    blocks_total: int
    households_done: int
    fallbacks: int
    seconds: float


@dataclass(frozen=True)
class HouseholdRun:
    """One household's outcome (what a worker sends back)."""

    household_id: str
    as_of: dt.date | None
    model_version: str | None
    fallback_reason: str | None
    month_total_kwh: float | None
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class FleetReport:
    """The outcome of a fleet run; ``fallbacks_by_reason`` keys are the reason codes."""

    households: int
    prophet: int
    fallbacks: int
    fallbacks_by_reason: dict[str, int]
    failed: dict[str, str]
    seconds: float
    household_seconds_total: float
    workers: int
    out_dir: str
    as_of: str | None
    runs: list[HouseholdRun] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """The report as plain JSON-ready values (without the per-household runs)."""
        data = dataclasses.asdict(self)
        data.pop("runs")
        return data


def _reason_code(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


def _as_of(series: DailySeries, limit: dt.date | None, final_coverage: float) -> dt.date | None:
    known = series if limit is None else series.until(limit)
    present = np.flatnonzero(np.isfinite(known.kwh))
    if not len(present):
        return None
    tail = {known.start + dt.timedelta(days=int(i)): float(known.coverage[i]) for i in present[-2:]}
    return target_day(tail, final_coverage)


def _window(series: DailySeries, day: dt.date) -> dict[dt.date, str]:
    """The fitted days' inputs as the forecast's fingerprint sees them: ``kwh/coverage``.

    Each value is written as numpy 2 writes a float64 (``np.float64(0.25)``), which is
    what the fleet has always hashed; built from Python floats in one pass (numpy's
    shortest repr is Python's) because a per-day numpy scalar repr cost ~4 % of a forecast.
    """
    known = series.until(day)
    present = np.flatnonzero(np.isfinite(known.kwh))
    days = known.dates[present].astype("datetime64[D]").tolist()
    kwh = known.kwh[present].tolist()
    coverage = known.coverage[present].tolist()
    return {
        d: f"np.float64({k!r})/np.float64({c!r})"
        for d, k, c in zip(days, kwh, coverage, strict=True)
    }


def forecast_one(
    series: DailySeries,
    store: LocalResultStore | None,
    *,
    settings: ModelSettings = DEFAULT_SETTINGS,
    as_of: dt.date | None = None,
    plots: bool = False,
    checkpoints: bool = True,
    final_coverage: float = DEFAULT_FINAL_COVERAGE,
    settings_fingerprint: str | None = None,
) -> HouseholdRun:
    """Forecast one household and write its objects to ``store`` (None: write nothing).

    ``settings_fingerprint``: ``settings.fingerprint()`` when the caller has it already
    (a worker computes it once per block, not once per household).
    """
    started = time.perf_counter()
    day = _as_of(series, as_of, final_coverage)
    if day is None:
        return HouseholdRun(
            series.household_id,
            None,
            None,
            "no_data: no day with data",
            None,
            time.perf_counter() - started,
        )
    result = forecast_month(series, day, settings=settings, checkpoint=checkpoints)
    settings_print = settings_fingerprint or settings.fingerprint()
    forecast = result.forecast
    if store is not None:
        if plots:
            document = components_document(
                result.components,
                series.household_id,
                day,
                fallback_reason=forecast.fallback_reason,
            )
            key = store.put_components(document)
            forecast = forecast.model_copy(update={"plot_keys": {"components": key}})
        if result.checkpoint is not None:
            store.put_checkpoint(series.household_id, result.checkpoint)
        store.put_forecast(forecast, input_fingerprint(settings_print, day, _window(series, day)))
    return HouseholdRun(
        series.household_id,
        day,
        forecast.model_version,
        forecast.fallback_reason,
        forecast.month_total_kwh,
        time.perf_counter() - started,
    )


@dataclass(frozen=True)
class _Job:
    path: str
    out_dir: str | None
    settings: ModelSettings
    as_of: dt.date | None
    plots: bool
    checkpoints: bool
    households: frozenset[str] | None


def _run_block(job: _Job) -> list[HouseholdRun]:
    quiet_prophet_logging()
    store = LocalResultStore(job.out_dir) if job.out_dir is not None else None
    settings_print = job.settings.fingerprint()
    runs = []
    for series in read_lcl_block(job.path):
        if job.households is not None and series.household_id not in job.households:
            continue
        try:
            runs.append(
                forecast_one(
                    series,
                    store,
                    settings=job.settings,
                    as_of=job.as_of,
                    plots=job.plots,
                    checkpoints=job.checkpoints,
                    settings_fingerprint=settings_print,
                )
            )
        except Exception as error:  # one household fails, not the fleet; reported
            runs.append(
                HouseholdRun(
                    series.household_id,
                    None,
                    None,
                    None,
                    None,
                    0.0,
                    error=f"{type(error).__name__}: {error}",
                )
            )
    return runs


_BLAS_THREADS: Final = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Workers start with one BLAS thread each (unless the caller chose otherwise).

    Our matrices are ~50x50: BLAS threads only add contention, and with one process per
    core they oversubscribe it (measured on 2 cores: the MAP fit 3x slower, the sampling
    17x). Set in the environment the spawned workers inherit, then restored.
    """
    saved = {name: os.environ.get(name) for name in _BLAS_THREADS}
    for name in _BLAS_THREADS:
        os.environ.setdefault(name, "1")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _first_households(
    paths: list[str], wanted: frozenset[str] | None, limit: int
) -> tuple[list[str], frozenset[str]]:
    """The block files holding the first ``limit`` (wanted) households, and their ids."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    chosen: list[str] = []
    used: list[str] = []
    for path in paths:
        if len(chosen) >= limit:
            break
        ids = [i for i in lcl_block_ids(path) if wanted is None or i in wanted]
        if ids:
            used.append(path)
            chosen.extend(ids[: limit - len(chosen)])
    return used, frozenset(chosen)


def run_fleet(
    data_dir: str | Path,
    out_dir: str | Path | None,
    *,
    workers: int | None = None,
    on_progress: Callable[[FleetProgress], None] | None = None,
    settings: ModelSettings = DEFAULT_SETTINGS,
    as_of: dt.date | None = None,
    plots: bool = False,
    checkpoints: bool = True,
    households: Sequence[str] | None = None,
    limit: int | None = None,
) -> FleetReport:
    """Forecast every household of an LCL ``daily_dataset`` folder, in parallel.

    ``workers``: processes (default: the CPU count; 1 runs in this process).
    ``out_dir``: where the objects go (None: compute only, e.g. to time the model).
    ``as_of``: forecast as of this day (each household's newest final day on or before
    it); default each household's own last final day. ``plots``: also write the
    components plot's data (the gateway renders the PNG when it is first requested).
    ``households``: only these ids. ``limit``: only the first ``limit`` of them (of all
    households if ``households`` is None) in block order, for a quick run; only the block
    files that hold them are read.
    """
    started = time.perf_counter()
    paths = [str(p) for p in lcl_blocks(data_dir)]
    wanted = frozenset(households) if households is not None else None
    if limit is not None:
        paths, wanted = _first_households(paths, wanted, limit)
    jobs = [
        _Job(
            p,
            None if out_dir is None else str(out_dir),
            settings,
            as_of,
            plots,
            checkpoints,
            wanted,
        )
        for p in paths
    ]
    count = max(1, workers if workers is not None else (os.cpu_count() or 1))
    runs: list[HouseholdRun] = []
    fallbacks = 0

    def collect(block_runs: list[HouseholdRun], done: int) -> None:
        nonlocal fallbacks
        runs.extend(block_runs)
        fallbacks += sum(1 for r in block_runs if r.fallback_reason)
        if on_progress is not None:
            on_progress(
                FleetProgress(done, len(jobs), len(runs), fallbacks, time.perf_counter() - started)
            )

    if count == 1:
        for done, job in enumerate(jobs, 1):
            collect(_run_block(job), done)
    else:
        context = multiprocessing.get_context("spawn")
        with _single_threaded_blas(), context.Pool(processes=count) as pool:
            for done, block_runs in enumerate(pool.imap_unordered(_run_block, jobs), 1):
                collect(block_runs, done)
    reasons = Counter(_reason_code(r.fallback_reason) for r in runs if r.fallback_reason)
    failed = {r.household_id: r.error for r in runs if r.error}
    return FleetReport(
        households=len(runs),
        prophet=sum(1 for r in runs if r.model_version and not r.fallback_reason),
        fallbacks=sum(reasons.values()),
        fallbacks_by_reason=dict(sorted(reasons.items())),
        failed=failed,
        seconds=time.perf_counter() - started,
        household_seconds_total=sum(r.seconds for r in runs),
        workers=count,
        out_dir=str(out_dir) if out_dir is not None else "",
        as_of=as_of.isoformat() if as_of else None,
        runs=sorted(runs, key=lambda r: r.household_id),
    )
