"""Anomaly detector on real data with injected anomalies: ``python -m bench anomalies``.

Why: an anomaly flag is only useful if it is rare on normal data and fires on the
deviations a household or an operator cares about. This bench measures both, on real
London half-hourly meters and the UCI household (binned at the realtime bin size,
15 min), with the detector the stream runs (:mod:`services.realtime.core.anomaly`).

Protocol (seeded; nothing is placed at fixed positions):

* Each series is cut into segments of ``--segment-days`` (28): the first ``--warm-days``
  (8) feed the detector's reference days and are not scored.
* Every segment is run untouched (the flag rate on normal data) and once per injected
  kind, with one anomaly at a random time of its scored part:
  ``excess`` (+1.5 kW for 2-6 h), ``stuck_zero`` (0 kW for 6 h), ``spike`` (one bin of
  +3..10 kW), ``level_shift`` (a step that persists to the segment's end: +0.5..1.5 kW, or
  down to 20-50 % of the consumption).
* An injection is *detected* when a bin inside it (a step: its first 24 h) is flagged;
  its size is the energy it added or removed there (kWh). A flagged event (a run of
  flagged bins) is a true positive when it overlaps an injection, else a false one.
* Honest split: the threshold is calibrated (``--calibrate``) on half the London
  households (seeded) in January-June and UCI up to 2008; everything reported is on the
  other households in July-December and UCI from 2009.
* Baseline, same segments: the previous rule (actual outside the seasonal-naive 10-90 %
  interval, the fallback's forecast for energy-only meters).

The last line is one JSON object: ``flag_rate_normal``, ``recall`` (injections of at
least 1 kWh), ``precision``, ``by_kind`` (per injected kind), plus the same for the
baseline and the ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from services.realtime.core.anomaly import KINDS, AnomalyConfig, Verdicts, detect_series
from services.realtime.model.data import load_uci_bins

FloatArray = npt.NDArray[np.float64]
DATA: Final = Path(__file__).resolve().parents[2] / "shared" / "data"
LCL_FILE: Final = "lcl_halfhourly_2013_100households.csv.gz"
UCI_FILE: Final = "uci_household_power_consumption.txt.gz"
INJECTED: Final = ("excess", "stuck_zero", "spike", "level_shift")
#: Detected kinds that name each injected kind correctly.
EXPECTED_KINDS: Final = {
    "excess": {"excess", "level_shift"},
    "stuck_zero": {"stuck_zero"},
    "spike": {"spike"},
    "level_shift": {"level_shift", "excess", "deficit"},
}
SHIFT_WINDOW_S: Final = 86_400
MIN_KWH: Final = 1.0
UCI_RESOLUTION_S: Final = 900
_DAY_S: Final = 86_400


@dataclass(frozen=True)
class Segments:
    """Series cut into equal segments: ``values (segments, bins)`` kW from ``first_bin``
    (absolute bin of each segment's start); scored from ``warm`` bins on."""

    name: str
    values: FloatArray
    first_bin: npt.NDArray[np.int64]
    resolution_s: int
    warm: int


def lcl_series(path: Path) -> tuple[list[str], FloatArray, int]:
    """London households' half-hourly kW ``(households, bins)`` for 2013 and its first bin."""
    frame = pd.read_csv(path, names=["id", "ts", "kwh"], header=0)
    frame["kwh"] = pd.to_numeric(frame["kwh"], errors="coerce")
    frame["ts"] = pd.to_datetime(frame["ts"])
    grid = pd.date_range("2013-01-01", "2013-12-31 23:30", freq="30min")
    wide = frame.pivot_table(index="id", columns="ts", values="kwh", aggfunc="first")
    wide = wide.reindex(columns=grid)
    first = int(grid[0].tz_localize("UTC").timestamp()) // 1800
    return [str(i) for i in wide.index], wide.to_numpy(dtype=np.float64) * 2.0, first


def uci_series(path: Path) -> tuple[FloatArray, int]:
    """The UCI household's active power binned at the realtime bin size (mean kW)."""
    binned = load_uci_bins(path, UCI_RESOLUTION_S)
    first = int(binned.starts_us[0]) // (UCI_RESOLUTION_S * 1_000_000)
    return binned.values[:, 0].astype(np.float64), first


def cut(
    name: str,
    values: FloatArray,
    first_bin: int,
    resolution_s: int,
    start: int,
    stop: int,
    segment_days: int,
    warm_days: int,
) -> Segments:
    """Segments of ``values[:, start:stop]`` (bins aligned to days)."""
    per_day = _DAY_S // resolution_s
    length = segment_days * per_day
    start, stop = max(start, 0), min(stop, values.shape[1])
    begin = start + (-(first_bin + start)) % per_day
    count = max(0, (stop - begin) // length)
    parts = [values[:, begin + i * length : begin + (i + 1) * length] for i in range(count)]
    firsts = [first_bin + begin + i * length for i in range(count)]
    stacked = np.concatenate(parts) if parts else np.empty((0, length))
    bins = np.repeat(np.array(firsts, dtype=np.int64), len(values))
    # concatenate puts all series of segment 0 first, then segment 1, ...
    return Segments(name, stacked, bins, resolution_s, warm_days * per_day)


@dataclass(frozen=True)
class Injection:
    kind: str
    start: int  # bin within the segment
    stop: int  # exclusive; the matching window
    kwh: float  # energy added (+) or removed (-) within [start, stop)


def inject(
    seg: Segments, kind: str, rng: np.random.Generator
) -> tuple[FloatArray, list[Injection]]:
    """One anomaly of ``kind`` per segment, at a random time of its scored part."""
    values = seg.values.copy()
    bins = values.shape[1]
    bin_h = seg.resolution_s / 3600
    per_hour = 3600 // seg.resolution_s
    out: list[Injection] = []
    for i in range(len(values)):
        row = values[i]
        if kind == "excess":
            length = int(rng.integers(2 * per_hour, 6 * per_hour + 1))
        elif kind == "stuck_zero":
            length = 6 * per_hour
        elif kind == "spike":
            length = 1
        else:
            length = SHIFT_WINDOW_S // seg.resolution_s
        a = int(rng.integers(seg.warm, bins - length))
        b = a + length
        before = row[a:b].copy()
        if kind == "excess":
            row[a:b] += 1.5
        elif kind == "stuck_zero":
            row[a:b] = np.where(np.isnan(row[a:b]), np.nan, 0.0)
        elif kind == "spike":
            row[a] += float(rng.uniform(3.0, 10.0))
        elif rng.random() < 0.5:
            row[a:] += float(rng.uniform(0.5, 1.5))
        else:
            row[a:] *= float(rng.uniform(0.2, 0.5))
        kwh = float(np.nansum(row[a:b] - before) * bin_h)
        out.append(Injection(kind, a, b, kwh))
    return values, out


def baseline_flags(seg: Segments, values: FloatArray) -> npt.NDArray[np.bool_]:
    """The previous rule: actual outside the seasonal-naive 10-90 % interval (the value a
    day earlier plus the 10/90 % quantiles of the last 7 days' day-over-day changes)."""
    per_day = _DAY_S // seg.resolution_s
    frame = pd.DataFrame(values.T)
    base = frame.shift(per_day)
    change = (frame - base).shift(1)  # residuals known before the bin
    window = change.rolling(7 * per_day - per_day, min_periods=per_day)
    lower = base + window.quantile(0.1)
    upper = base + window.quantile(0.9)
    flags = ((frame < lower) | (frame > upper)).to_numpy().T
    return flags


def events(flags: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Runs ``[start, stop)`` of consecutive flagged bins in one row."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else round(num / den, 4)


@dataclass
class Tally:
    """Counts for one injected kind (or the untouched runs)."""

    injected: int = 0
    injected_big: int = 0
    detected: int = 0
    detected_big: int = 0
    named: int = 0
    events_true: int = 0
    events_false: int = 0
    kwh_ratios: list[float] | None = None

    def json(self) -> dict[str, Any]:
        ratios = self.kwh_ratios or []
        return {
            "injected": self.injected,
            "injected_1kwh": self.injected_big,
            "recall": _ratio(self.detected_big, self.injected_big),
            "recall_all_sizes": _ratio(self.detected, self.injected),
            "precision": _ratio(self.events_true, self.events_true + self.events_false),
            "kind_named_right": _ratio(self.named, self.detected),
            "kwh_reported_over_injected_median": (
                round(float(np.median(ratios)), 3) if ratios else None
            ),
        }


def score(
    seg: Segments,
    flags: npt.NDArray[np.bool_],
    verdicts: Verdicts | None,
    injections: Sequence[Injection],
    tally: Tally,
) -> None:
    """Add one kind's injected runs to ``tally``."""
    for i, inj in enumerate(injections):
        row = flags[i]
        big = abs(inj.kwh) >= MIN_KWH
        tally.injected += 1
        tally.injected_big += big
        hit = np.flatnonzero(row[inj.start : inj.stop])
        if len(hit):
            tally.detected += 1
            tally.detected_big += big
            if verdicts is not None:
                at = i * row.shape[0] + inj.start + hit
                names = {KINDS[k] for k in verdicts.kind[at].tolist()}
                tally.named += bool(names & EXPECTED_KINDS[inj.kind])
                if inj.kind in ("excess", "spike", "stuck_zero") and inj.kwh:
                    last = int(at[-1])
                    tally.kwh_ratios = (tally.kwh_ratios or []) + [
                        float(verdicts.kwh[last]) / inj.kwh
                    ]
        for a, b in events(row[seg.warm :]):
            a, b = a + seg.warm, b + seg.warm
            if a < inj.stop and b > inj.start:
                tally.events_true += 1
            else:
                tally.events_false += 1


@dataclass
class Run:
    """Raw counts of one evaluation: ours and the baseline's."""

    ours: dict[str, Tally]
    base: dict[str, Tally]
    normal: list[int]
    normal_base: list[int]

    @classmethod
    def empty(cls) -> Run:
        return cls({k: Tally() for k in INJECTED}, {k: Tally() for k in INJECTED}, [0, 0], [0, 0])


def evaluate(
    segments: Sequence[Segments], config: AnomalyConfig, seed: int, *, baseline: bool
) -> dict[str, Run]:
    """Per data set: flag rate on untouched segments, recall and precision per kind."""
    rng = np.random.default_rng(seed)
    out: dict[str, Run] = {}
    for seg in segments:
        if not len(seg.values):
            continue
        run = out.setdefault(seg.name, Run.empty())
        runs: list[tuple[str, FloatArray, list[Injection]]] = [("normal", seg.values, [])]
        runs += [(k, *inject(seg, k, rng)) for k in INJECTED]
        stacked = np.concatenate([r[1] for r in runs])
        verdicts = _detect(seg, stacked, config)
        flags = verdicts.flag.reshape(stacked.shape)
        scored = ~np.isnan(stacked)
        scored[:, : seg.warm] = False
        base_flags = baseline_flags(seg, stacked) if baseline else None
        n = len(seg.values)
        for j, (kind, _, injections) in enumerate(runs):
            rows = slice(j * n, (j + 1) * n)
            if kind == "normal":
                run.normal[0] += int((flags[rows] & scored[rows]).sum())
                run.normal[1] += int(scored[rows].sum())
                if base_flags is not None:
                    run.normal_base[0] += int((base_flags[rows] & scored[rows]).sum())
                    run.normal_base[1] += int(scored[rows].sum())
                continue
            sub = Verdicts(*(getattr(verdicts, f)[j * n * flags.shape[1] :] for f in _FIELDS))
            score(seg, flags[rows], sub, injections, run.ours[kind])
            if base_flags is not None:
                score(seg, base_flags[rows], None, injections, run.base[kind])
    return out


def merge(runs: Sequence[Run]) -> Run:
    total = Run.empty()
    for run in runs:
        for mine, theirs in ((total.ours, run.ours), (total.base, run.base)):
            for kind, t in theirs.items():
                m = mine[kind]
                for name in (
                    "injected",
                    "injected_big",
                    "detected",
                    "detected_big",
                    "named",
                    "events_true",
                    "events_false",
                ):
                    setattr(m, name, getattr(m, name) + getattr(t, name))
                m.kwh_ratios = (m.kwh_ratios or []) + (t.kwh_ratios or [])
        for i in range(2):
            total.normal[i] += run.normal[i]
            total.normal_base[i] += run.normal_base[i]
    return total


_FIELDS: Final = ("score", "flag", "kind", "kwh", "duration_s", "start_us", "expected_kw")


def _detect(seg: Segments, values: FloatArray, config: AnomalyConfig) -> Verdicts:
    """The detector over segments that all start on the same bin (cut() aligns them
    per segment index; the phase of the day is what matters, so use the first)."""
    return detect_series(values, int(seg.first_bin[0]), seg.resolution_s, config)


def _summary(tallies: dict[str, Tally], normal: Sequence[int]) -> dict[str, Any]:
    total = Tally()
    for t in tallies.values():
        for name in ("injected", "injected_big", "detected", "detected_big", "named"):
            setattr(total, name, getattr(total, name) + getattr(t, name))
        total.events_true += t.events_true
        total.events_false += t.events_false
    return {
        "flag_rate_normal": _ratio(normal[0], normal[1]),
        "recall": _ratio(total.detected_big, total.injected_big),
        "recall_all_sizes": _ratio(total.detected, total.injected),
        "precision": _ratio(total.events_true, total.events_true + total.events_false),
        "by_kind": {k: t.json() for k, t in tallies.items()},
        "normal_bins": int(normal[1]),
    }


def splits(
    lcl_path: Path,
    uci_path: Path,
    segment_days: int,
    warm_days: int,
    seed: int,
    households: int | None,
) -> tuple[list[Segments], list[Segments], dict[str, Any]]:
    """Calibration and report segments (disjoint households and months)."""
    ids, lcl, lcl_first = lcl_series(lcl_path)
    order = np.random.default_rng(seed).permutation(len(ids))
    half = len(ids) // 2
    cal_h, rep_h = np.sort(order[:half]), np.sort(order[half:])
    if households:
        cal_h, rep_h = cal_h[:households], rep_h[:households]
    july = int((dt.datetime(2013, 7, 1, tzinfo=dt.UTC).timestamp() // 1800) - lcl_first)
    uci, uci_first = uci_series(uci_path)
    per_us = UCI_RESOLUTION_S
    uci_split = int(dt.datetime(2009, 1, 1, tzinfo=dt.UTC).timestamp() // per_us) - uci_first
    args = (segment_days, warm_days)
    cal = [
        cut("london", lcl[cal_h], lcl_first, 1800, 0, july, *args),
        cut("uci", uci[None, :], uci_first, UCI_RESOLUTION_S, 0, uci_split, *args),
    ]
    rep = [
        cut("london", lcl[rep_h], lcl_first, 1800, july, lcl.shape[1], *args),
        cut("uci", uci[None, :], uci_first, UCI_RESOLUTION_S, uci_split, len(uci), *args),
    ]
    if households:  # fast mode: a few UCI segments only
        cal[1] = _first_segments(cal[1], 2)
        rep[1] = _first_segments(rep[1], 2)
    info = {
        "calibration": {
            "london_households": len(cal_h),
            "london_months": "2013-01..2013-06",
            "uci": "2006-12..2008-12",
        },
        "report": {
            "london_households": len(rep_h),
            "london_months": "2013-07..2013-12",
            "uci": "2009-01..2010-11",
        },
    }
    return cal, rep, info


def _first_segments(seg: Segments, count: int) -> Segments:
    return replace(seg, values=seg.values[:count], first_bin=seg.first_bin[:count])


def by_segment(segments: Sequence[Segments]) -> list[Segments]:
    """Split each set into groups that share a start bin (one detector run each)."""
    out: list[Segments] = []
    for seg in segments:
        for first in np.unique(seg.first_bin):
            rows = seg.first_bin == first
            out.append(replace(seg, values=seg.values[rows], first_bin=seg.first_bin[rows]))
    return out


def calibrate(
    segments: Sequence[Segments], config: AnomalyConfig, target: float
) -> tuple[float, float, dict[str, float]]:
    """The smallest threshold (a positive multiple of 0.05) whose flag rate on untouched
    calibration data is at most ``target``, that rate, and the rate at a few thresholds.

    One detector pass: a bin is flagged exactly when its score exceeds the threshold.
    """
    parts = []
    for seg in segments:
        verdicts = _detect(seg, seg.values, config)
        scores = verdicts.score.reshape(seg.values.shape)[:, seg.warm :]
        parts.append(scores[~np.isnan(seg.values[:, seg.warm :])])
    scores = np.concatenate(parts)
    chosen = max(0.05, float(np.ceil(np.quantile(scores, 1 - target) * 20) / 20))
    curve = {f"{t:g}": round(float((scores > t).mean()), 5) for t in (0.5, 1, 1.5, 2, 2.5, 3)}
    return chosen, float((scores > chosen).mean()), curve


def table(result: dict[str, Any]) -> str:
    """The README table."""
    lines = [
        "| injected kind | injected (>= 1 kWh) | recall >= 1 kWh | recall all | precision "
        "| kind named right | baseline recall | baseline precision |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = result.get("baseline", {}).get("by_kind", {})
    for kind, row in result["by_kind"].items():
        b = base.get(kind, {})
        lines.append(
            f"| {kind} | {row['injected']} ({row['injected_1kwh']}) | {row['recall']} "
            f"| {row['recall_all_sizes']} | {row['precision']} | {row['kind_named_right']} "
            f"| {b.get('recall')} | {b.get('precision')} |"
        )
    lines.append(
        f"| **all** | | **{result['recall']}** | {result['recall_all_sizes']} "
        f"| **{result['precision']}** | | {result.get('baseline', {}).get('recall')} "
        f"| {result.get('baseline', {}).get('precision')} |"
    )
    lines.append(
        f"\nflag rate on untouched data: **{result['flag_rate_normal']}** "
        f"(baseline {result.get('baseline', {}).get('flag_rate_normal')})"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench anomalies", description=__doc__)
    parser.add_argument("--lcl", type=Path, default=DATA / LCL_FILE, help="London half-hourly")
    parser.add_argument("--uci", type=Path, default=DATA / UCI_FILE, help="UCI minute file")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--segment-days", type=int, default=28)
    parser.add_argument("--warm-days", type=int, default=8)
    parser.add_argument(
        "--households", type=int, default=None, help="London households per split (fast mode)"
    )
    parser.add_argument("--threshold", type=float, default=None, help="default: the shipped one")
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="choose the threshold on the calibration split (flag rate <= --target)",
    )
    parser.add_argument("--target", type=float, default=0.008)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args(argv)
    for path in (args.lcl, args.uci):
        if not path.exists():
            print(f"data file not found: {path}", file=sys.stderr)
            return 2
    started = time.perf_counter()
    config = AnomalyConfig()
    if args.threshold is not None:
        config = replace(config, threshold=args.threshold)
    cal, rep, info = splits(
        args.lcl, args.uci, args.segment_days, args.warm_days, args.seed, args.households
    )
    cal, rep = by_segment(cal), by_segment(rep)
    print(f"loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    calibration: dict[str, Any] = {"threshold_default": config.threshold}
    if args.calibrate:
        chosen, rate, curve = calibrate(cal, config, args.target)
        calibration |= {
            "threshold_calibrated": chosen,
            "target": args.target,
            "flag_rate": round(rate, 5),
            "flag_rate_by_threshold": curve,
        }
        config = replace(config, threshold=chosen)
    runs = evaluate(rep, config, args.seed, baseline=not args.no_baseline)
    total = merge(list(runs.values()))
    result = _summary(total.ours, total.normal)
    if not args.no_baseline:
        result["baseline"] = _summary(total.base, total.normal_base)
    per_set = {name: _summary(run.ours, run.normal) for name, run in runs.items()}
    summary = {
        "flag_rate_normal": result["flag_rate_normal"],
        "recall": result["recall"],
        "precision": result["precision"],
        "by_kind": result["by_kind"],
        "recall_all_sizes": result["recall_all_sizes"],
        "threshold": config.threshold,
        "calibration": calibration,
        "split": info,
        "by_dataset": {
            name: {k: r[k] for k in ("flag_rate_normal", "recall", "precision", "normal_bins")}
            for name, r in per_set.items()
        },
        "baseline": result.get("baseline"),
        "flag_rate_ratio_vs_baseline": (
            _ratio(result["flag_rate_normal"], result["baseline"]["flag_rate_normal"])
            if result.get("baseline")
            else None
        ),
        "goal": {"flag_rate_normal_max": 0.01, "recall_min": 0.8},
        "met": bool(
            result["flag_rate_normal"] is not None
            and result["flag_rate_normal"] <= 0.01
            and (result["recall"] or 0) >= 0.8
        ),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(table(result))
    for name, row in summary["by_dataset"].items():
        print(
            f"{name}: {row['flag_rate_normal']} of {row['normal_bins']:,} untouched bins "
            f"flagged, recall >= 1 kWh {row['recall']}, precision {row['precision']}"
        )
    print(json.dumps(summary, separators=(",", ":")))
    return 0
