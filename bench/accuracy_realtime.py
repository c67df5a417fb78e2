"""Accuracy of the realtime LSTM under two published protocols, next to baselines.

``python -m bench accuracy-realtime [--data FILE] [--seed N] [--epochs N] [--only NAME]``

For each protocol (see ``services/realtime/model/evaluation.py`` for exactly how the
windows are formed and how gaps are treated) it trains the protocol's model (the same
``build_model`` as the shipped streaming model, sized for the protocol), then scores it,
persistence, the seasonal naive forecast and linear regression on the same test
windows, and prints the published reference. On the day-ahead protocol our point
forecast is the ensemble of ``services/realtime/model/ensemble.py`` (the LSTM, a
seasonal-profile regression and an MLP, weights chosen on a validation slice of the
training period); each member is reported too (``members``, ``ensemble_weights``,
``validation``). The last line is one JSON object:
``day_ahead_15min`` / ``hourly_one_step`` hold our model's ``{rmse, mae, ...}``,
``baselines`` each baseline per protocol, ``published`` the references, and
``train_seconds`` the training time per protocol. Needs the full UCI file and
TensorFlow; a few minutes per protocol on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_DATA = (
    Path(
        os.environ.get(
            "WATTSTREAM_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"
        )
    )
    / "uci_household_power_consumption.txt.gz"
)


def _progress(event: Any) -> None:
    if event.message:
        parts = [event.message]
        if event.loss is not None:
            parts.append(f"loss {event.loss:.4f}")
        if event.val_loss is not None:
            parts.append(f"val {event.val_loss:.4f}")
        print("  " + ", ".join(parts), file=sys.stderr, flush=True)


def table(results: list[Any]) -> str:
    """The side-by-side table (Markdown, so the README can carry it verbatim)."""
    lines = [
        "| protocol | model | RMSE kW | MAE kW |",
        "|---|---|---:|---:|",
    ]
    for r in results:
        if r.point == "ensemble":
            shares = ", ".join(f"{k.replace('_', ' ')} {w:.2f}" for k, w in r.weights.items())
            rows = [
                (f"**ours: ensemble** ({shares}; 80 % interval holds {r.coverage:.0%})", r.model),
                ("ours: LSTM, median", r.members["lstm_median"]),
                ("ours: LSTM, mean from the quantiles (Swanson)", r.mean_estimate),
                ("ours: seasonal-profile regression", r.members["profile_regression"]),
                ("ours: MLP on the profile regressors", r.members["mlp"]),
            ]
        else:
            rows = [
                (f"**ours: LSTM, median** (80 % interval holds {r.coverage:.0%})", r.model),
                ("ours: LSTM, mean from the quantiles (Swanson)", r.mean_estimate),
            ]
        rows += [(name.replace("_", " "), m) for name, m in r.baselines.items()]
        for label, m in rows:
            lines.append(f"| {r.protocol} | {label} | {m.rmse:.3f} | {m.mae:.3f} |")
        ref = r.reference
        lines.append(
            f"| {r.protocol} | published: {ref.model} ({ref.source}) | {ref.rmse:.3f} | "
            f"{ref.mae:.3f} |"
        )
    return "\n".join(lines)


def run(data: Path, *, seed: int | None, epochs: int | None, only: str | None) -> dict[str, Any]:
    from services.realtime.model.evaluation import PROTOCOLS, run_protocols

    protocols = tuple(p for p in PROTOCOLS if only in (None, p.name))
    started = time.perf_counter()
    print(f"accuracy-realtime on {data.name}: {', '.join(p.name for p in protocols)}")
    results = run_protocols(
        data, protocols=protocols, seed=seed, epochs=epochs, on_progress=_progress
    )
    total = time.perf_counter() - started
    print(table(results))
    for r in results:
        print(
            f"  {r.protocol}: {r.test_windows:,} test windows, {r.train_windows:,} training "
            f"windows, trained {r.train_seconds:.0f} s ({r.epochs_run} epochs, best "
            f"{r.best_epoch}); goal RMSE <= {r.goal_rmse}: "
            f"{'met' if r.model.rmse <= r.goal_rmse else 'NOT met'}"
        )
    out: dict[str, Any] = {"benchmark": "accuracy-realtime", "data": data.name}
    baselines: dict[str, dict[str, Any]] = {}
    for r in results:
        out[r.protocol] = {
            **r.model.as_dict(),
            "point": r.point,
            "mean_estimate": {k: v for k, v in r.mean_estimate.as_dict().items() if k != "n"},
            "interval_coverage": round(r.coverage, 4),
            "test_windows": r.test_windows,
            "goal_rmse": r.goal_rmse,
            "goal_met": r.model.rmse <= r.goal_rmse,
        }
        if r.point == "ensemble":
            out[r.protocol].update(
                {
                    "members": {k: m.as_dict() for k, m in r.members.items()},
                    "ensemble_weights": r.weights,
                    "interval_scale": r.interval_scale,
                    "validation": {k: m.as_dict() for k, m in r.validation.items()},
                    "validation_windows": r.validation_windows,
                    "regression_shrinkage": r.regression_shrinkage,
                }
            )
        for name, m in r.baselines.items():
            baselines.setdefault(name, {})[r.protocol] = m.as_dict()
    out["baselines"] = baselines
    out["published"] = {r.protocol: r.reference.as_dict() for r in results}
    out["train_seconds"] = {r.protocol: round(r.train_seconds, 1) for r in results}
    out["total_seconds"] = round(total, 1)
    out["seed"] = results[0].config.seed if results else seed
    out["epochs"] = {r.protocol: r.epochs_run for r in results}
    out["cpus"] = os.cpu_count()
    out["python"] = platform.python_version()
    return out


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
    parser = argparse.ArgumentParser(prog="python -m bench accuracy-realtime", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the full UCI file")
    parser.add_argument("--seed", type=int, default=None, help="override the models' seed")
    parser.add_argument(
        "--epochs", type=int, default=None, help="override every network's epoch budget"
    )
    parser.add_argument("--only", choices=("day_ahead_15min", "hourly_one_step"), default=None)
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(
            f"UCI file not found: {args.data} (set --data or WATTSTREAM_DATA_DIR)", file=sys.stderr
        )
        return 2
    print(json.dumps(run(args.data, seed=args.seed, epochs=args.epochs, only=args.only)))
    return 0
