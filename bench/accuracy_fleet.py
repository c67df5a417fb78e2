"""Accuracy of the fleet model on London smart meters, against naive rules, same windows.

``python -m bench accuracy-fleet [--data DIR] [--households N] [--epochs N] [--stream-stride N]``

Protocol (London half-hourly file, 2013):

* **main split**: train on January-October of every household (the model's own
  validation slice, the last 21 days of that period, picks the best epoch; 20 % of the
  training households, left out of fitting, calibrate the intervals over
  January-October), test on November-December of the same households;
* **heldout split**: train on 80 % of the households (January-October), test on the
  other 20 % (November-December): meters the model has never seen;
* **day-ahead**: forecasts issued at each midnight of the test months for the next 48
  half-hours (the top-level fields); **streaming**: issued every half hour
  (``--stream-stride`` bins) for the next 48 half-hours, reported under ``streaming``.

Metrics: MASE per household, scaled by the in-sample (January-October) MAE of seasonal
naive with a season of 48, averaged over households; RMSE and MAE (kW) over all points;
coverage of the 80 % interval (0.1-0.9). Baselines on exactly the same points: seasonal
naive (the previous day), mean and median of the same half-hour over the last 7 days,
and today's fallback (:class:`~services.realtime.core.fallback.SeasonalNaive`, what
energy-only meters got before). The model is the one served: the LiteRT flatbuffer of
the trained network behind :class:`~services.realtime.model.fleet_model.FleetModel`.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from services.realtime.core.fallback import SeasonalNaive
from services.realtime.model.fleet_data import (
    HALF_HOURLY_FILE,
    EnergyGrid,
    cut_windows,
    holidays_for,
    load_energy_grid,
)
from services.realtime.model.fleet_features import DAY_BINS, HISTORY_DAYS, nan_median_days

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
TEST_START: Final = "2013-11-01"
GOAL_VS_SEASONAL: Final = 0.70
GOAL_VS_BEST: Final = 0.90
GOAL_COVERAGE: Final = (0.77, 0.83)
FloatArray = npt.NDArray[np.float64]


def naive_scales(grid: EnergyGrid, stop: int) -> FloatArray:
    """In-sample MAE of seasonal naive (season 48) per household, bins before ``stop``."""
    y = grid.kw[:, :stop]
    diff = np.abs(y[:, DAY_BINS:] - y[:, :-DAY_BINS])
    with np.errstate(invalid="ignore"):
        return np.nanmean(diff, axis=1)


def baselines(history: FloatArray) -> dict[str, FloatArray]:
    """Point forecasts ``(n, 48)`` of the naive rules from 7-day histories."""
    days = history.reshape(len(history), HISTORY_DAYS, DAY_BINS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean7 = np.nanmean(days, axis=1)
    fallback = SeasonalNaive.for_meter(1800, DAY_BINS, (0.1, 0.5, 0.9), 1800)
    quantiles, _ = fallback.predict(history)
    return {
        "seasonal_naive": days[:, -1],
        "mean7": mean7,
        "median7": nan_median_days(days),
        "fallback": quantiles[:, :, 1],
    }


@dataclass
class Tally:
    """Error sums per household and method, over the points where the target and every
    forecast exist (accumulated household by household: memory stays one household's)."""

    abs_err: dict[str, dict[int, float]] = field(default_factory=dict)
    sq_err: dict[str, float] = field(default_factory=dict)
    points: dict[int, int] = field(default_factory=dict)
    windows: int = 0
    inside: int = 0

    def add(
        self,
        household: int,
        target: FloatArray,
        forecasts: dict[str, FloatArray],
        interval: tuple[FloatArray, FloatArray],
    ) -> None:
        valid = ~np.isnan(target)
        for values in forecasts.values():
            valid &= np.isfinite(values)
        if not valid.any():
            return
        self.points[household] = self.points.get(household, 0) + int(valid.sum())
        self.windows += int(valid.any(axis=1).sum())
        for name, values in forecasts.items():
            diff = np.where(valid, values - target, 0.0)
            per = self.abs_err.setdefault(name, {})
            per[household] = per.get(household, 0.0) + float(np.abs(diff).sum())
            self.sq_err[name] = self.sq_err.get(name, 0.0) + float((diff**2).sum())
        lower, upper = interval
        self.inside += int(((target >= lower) & (target <= upper) & valid).sum())

    def result(self, scales: FloatArray) -> dict[str, Any]:
        """The contract's fields (MASE averaged over households), RMSE and MAE in kW."""
        total = sum(self.points.values())
        households = [h for h, n in self.points.items() if n and scales[h] > 0]
        mase = {
            name: float(np.mean([per[h] / self.points[h] / scales[h] for h in households]))
            for name, per in self.abs_err.items()
        }
        out: dict[str, Any] = {}
        for name in self.abs_err:
            suffix = "" if name == "model" else f"_{name}"
            out[f"rmse{suffix}"] = round(float(np.sqrt(self.sq_err[name] / total)), 4)
            out[f"mae{suffix}"] = round(sum(self.abs_err[name].values()) / total, 4)
        best = min(mase["seasonal_naive"], mase["mean7"], mase["median7"])
        return {
            "mase": round(mase["model"], 4),
            "mase_seasonal_naive": round(mase["seasonal_naive"], 4),
            "mase_ratio": round(mase["model"] / mase["seasonal_naive"], 4),
            "mase_mean7": round(mase["mean7"], 4),
            "mase_median7": round(mase["median7"], 4),
            "mase_best_naive": round(best, 4),
            "mase_ratio_best_naive": round(mase["model"] / best, 4),
            "mase_fallback": round(mase["fallback"], 4),
            "coverage_80": round(self.inside / total, 4),
            "households": len(households),
            "windows": self.windows,
            "points": total,
            **out,
        }


def evaluate(
    model: Any,
    grid: EnergyGrid,
    households: npt.NDArray[np.int64],
    origins: npt.NDArray[np.int64],
    scales: FloatArray,
) -> dict[str, Any]:
    """Forecast every (household, origin) pair with the model and the baselines."""
    tally = Tally()
    for h in households.tolist():
        history, target, issue = cut_windows(grid, np.full(len(origins), h), origins)
        quantiles = np.maximum(model.forecast(history, issue), 0.0)
        forecasts = {"model": quantiles[:, :, 1], **baselines(history)}
        tally.add(h, target, forecasts, (quantiles[:, :, 0], quantiles[:, :, -1]))
    return tally.result(scales)


def split(
    grid: EnergyGrid,
    holidays: frozenset[int],
    train_rows: npt.NDArray[np.int64],
    test_rows: npt.NDArray[np.int64],
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, Any]:
    """Train on ``train_rows`` before November, test ``test_rows`` in November-December."""
    from services.realtime.model.fleet_model import FleetModel
    from services.realtime.model.fleet_training import (
        FleetConfig,
        train_fleet_model,
        write_fleet_bundle,
    )

    test_start = grid.bin_of(TEST_START)
    end = grid.kw.shape[1]
    extra = {}
    if args.calibration_households is not None:
        extra["calibration_households"] = args.calibration_households
    config = FleetConfig(
        **extra,
        hidden=tuple(int(u) for u in args.hidden.split(",")),
        epochs=args.epochs,
        seed=args.seed,
        windows_per_household=args.windows_per_household,
    )
    started = time.perf_counter()
    trained = train_fleet_model(
        grid, holidays, households=train_rows, stop_bin=test_start, config=config
    )
    train_s = time.perf_counter() - started
    bundle = write_fleet_bundle(trained, workdir / trained.spec.version)
    model = FleetModel.from_bundle(bundle, max_batch=1024)
    scales = naive_scales(grid, test_start)
    midnights = np.arange(test_start, end - DAY_BINS + 1, DAY_BINS)
    stream = np.arange(test_start, end - DAY_BINS + 1, args.stream_stride)
    result = evaluate(model, grid, test_rows, midnights, scales)
    result["streaming"] = evaluate(model, grid, test_rows, stream, scales)
    result["train_seconds"] = round(train_s, 1)
    result["train_households"] = len(train_rows)
    result["model_version"] = trained.spec.version
    result["validation"] = trained.metrics["validation"]
    return result


def goals_met(result: dict[str, Any]) -> bool:
    return (
        result["mase_ratio"] <= GOAL_VS_SEASONAL
        and result["mase_ratio_best_naive"] <= GOAL_VS_BEST
        and GOAL_COVERAGE[0] <= result["coverage_80"] <= GOAL_COVERAGE[1]
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    grid = load_energy_grid(args.data, args.households)
    holidays = holidays_for(args.data, grid)
    rows = np.arange(len(grid.households))
    rng = np.random.default_rng(args.seed)
    shuffled = rng.permutation(rows)
    held = max(1, round(len(rows) * args.heldout_fraction))
    heldout_rows, seen_rows = np.sort(shuffled[:held]), np.sort(shuffled[held:])
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        main = split(grid, holidays, rows, rows, args, Path(tmp))
        heldout = split(grid, holidays, seen_rows, heldout_rows, args, Path(tmp))
    return {
        "benchmark": "accuracy-fleet",
        **main,
        "heldout": heldout,
        "protocol": {
            "data": str(args.data),
            "test": f"{TEST_START} .. 2013-12-31",
            "day_ahead": "issued at each midnight, 48 half-hours",
            "streaming": f"issued every {args.stream_stride} half-hour(s), 48 half-hours",
            "heldout_households": int(held),
            "epochs": args.epochs,
            "hidden": args.hidden,
            "seed": args.seed,
        },
        "goals": {
            "mase_ratio": GOAL_VS_SEASONAL,
            "mase_ratio_best_naive": GOAL_VS_BEST,
            "coverage_80": list(GOAL_COVERAGE),
        },
        "goals_met": goals_met(main) and goals_met(heldout),
    }


def _row(name: str, r: dict[str, Any]) -> str:
    return (
        f"| {name} | {r['mase']:.3f} | {r['mase_seasonal_naive']:.3f} | {r['mase_mean7']:.3f} "
        f"| {r['mase_median7']:.3f} | {r['mase_fallback']:.3f} | {r['mase_ratio']:.3f} "
        f"| {r['mase_ratio_best_naive']:.3f} | {r['coverage_80']:.3f} | {r['rmse']:.3f} "
        f"| {r['mae']:.3f} | {r['households']} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench accuracy-fleet", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the files")
    parser.add_argument("--households", type=int, default=None, help="first N households")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs")
    parser.add_argument(
        "--windows-per-household", type=int, default=1200, help="training windows sampled"
    )
    parser.add_argument(
        "--hidden", default="64,32", help="hidden layer sizes of the network, comma-separated"
    )
    parser.add_argument(
        "--calibration-households",
        type=float,
        default=None,
        help="share of training households held out of fitting to calibrate the intervals "
        "(default: the training default)",
    )
    parser.add_argument("--stream-stride", type=int, default=1, help="streaming origin stride")
    parser.add_argument("--heldout-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    source = args.data / HALF_HOURLY_FILE if args.data.is_dir() else args.data
    if not source.is_file():
        print(f"data file not found: {source} (pass --data DIR)", file=sys.stderr)
        return 2
    result = run(args)
    print(
        "| split | MASE model | seasonal naive | mean7 | median7 | fallback | ratio vs SN "
        "| ratio vs best naive | coverage 80 % | RMSE kW | MAE kW | households |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(_row("main, day-ahead", result))
    print(_row("main, streaming", result["streaming"]))
    print(_row("held-out, day-ahead", result["heldout"]))
    print(_row("held-out, streaming", result["heldout"]["streaming"]))
    print(json.dumps(result))
    return 0
