"""Anomalies that mean something: each completed bin against the household's own usual day.

Why not "the actual left the forecast's interval": a 10-90 % interval is *meant* to miss
one bin in five, so that rule flagged 21 % of London half-hours; and it depends on which
model forecast (LSTM, global model, seasonal naive). This detector depends on no model:
it compares each completed bin with a robust expectation for that time of day, learnt
from the household's own recent days, and only flags deviations that persist or are
large in energy.

Per household, kept in its window state (:class:`AnomalyState`, a few KB):

* **Expectation.** A ring of the last ``days + 1`` days of bin means (kW). For the bin at
  time ``t`` the reference values are the same slot and its ``neighbours`` slots either
  side, on each of the previous ``days`` days (7 x 3 = 21 values): ``expected`` is their
  median; the ``spread`` is the distance from the median to the ``spread_q`` quantile on
  the side the actual lies (consumption is skewed: a household's high side is wider),
  floored at ``floor_kw`` and at ``floor_ratio`` of the median. Medians and quantiles
  ignore the odd kettle or holiday; the neighbouring slots forgive a routine that shifts
  by a bin. Above the median, the reference is the larger of the median and the same
  slots a week earlier (their median): a household's Saturday is compared with last
  Saturday too, not only with the weekdays.
* **Persistence** (two one-sided CUSUMs of ``z = (actual - expected) / spread``, each step
  clipped at ``cap_z``, minus a ``drift`` allowance, capped at ``cusum_cap`` limits): an
  excess or a deficit that lasts accumulates towards ``cusum_h``; noise drains to zero.
  Each bin adds its evidence in proportion to its length (per ``cusum_pace_s``, half an
  hour), so a 15-minute meter is not flagged twice as fast as a half-hourly one: per
  bin, the UCI house at 15 minutes flagged 1.3 % of its untouched bins where London's
  half-hourly meters flagged 0.7 % at the same threshold.
* **Spikes:** one bin ``spike_z`` spreads above expectation.
* **Stuck at zero:** readings of at most ``zero_kw`` for ``zero_s`` while the household
  usually uses at least ``zero_min_expected_kw``.

Each statistic counts only where the deviation means something: the run's energy is at
least ``min_kwh`` and its mean at least ``min_mean_kw`` (a deficit: or, after ``shift_s``,
half the usual consumption; and it must have lasted ``min_deficit_s``), the bin itself
still deviates that way (``|z| > drift``: flags stop when the anomaly stops), and the run
is younger than ``max_run_s`` (by then it is the new normal). ``score`` is the largest
statistic in *multiples of its limit*, and a bin is flagged exactly when ``score >
threshold``. ``threshold`` (default :data:`DEFAULT_THRESHOLD`) was chosen by measurement
(``python -m bench anomalies --calibrate``: at most 0.8 % of untouched calibration bins
flagged, so that normal data stays under 1 %).

Each flag says what it is (:data:`KINDS`): ``spike`` (one bin), ``excess`` / ``deficit``
(a run shorter than ``shift_s``), ``level_shift`` (a run that has lasted ``shift_s``:
the consumption changed and stayed; flagged for at most ``max_run_s``), ``stuck_zero``;
and how large: the run's energy above (``kwh > 0``) or below expectation, its start and
its duration so far.

Pure and deterministic: the same states and bins give the same verdicts, however the
bins are split into calls; a missing bin (NaN) changes no statistic and is never
flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from shared.schema import ANOMALY_KINDS

__all__ = [
    "DEFAULT_THRESHOLD",
    "KINDS",
    "STATS",
    "AnomalyConfig",
    "AnomalyState",
    "Verdicts",
    "detect",
    "detect_series",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_DAY_S: Final = 86_400
_US: Final = 1_000_000

#: Kinds of deviation, by code (``Verdicts.kind``); code 0 is "none".
KINDS: Final = ("none", *ANOMALY_KINDS)
_SPIKE, _EXCESS, _DEFICIT, _SHIFT, _ZERO = (
    KINDS.index(k) for k in ("spike", "excess", "deficit", "level_shift", "stuck_zero")
)

#: Multiple of the limits above which a bin is flagged, measured on untouched London and
#: UCI data (``python -m bench anomalies --calibrate``; see the README).
DEFAULT_THRESHOLD: Final = 0.85


@dataclass(frozen=True)
class AnomalyConfig:
    """The detector's rules; ``threshold`` is the one knob (``ANOMALY_THRESHOLD``)."""

    threshold: float = DEFAULT_THRESHOLD
    days: int = 7
    neighbours: int = 1
    min_reference: int = 6
    floor_kw: float = 0.05
    floor_ratio: float = 0.1
    spread_q: float = 0.9
    drift: float = 1.5
    cap_z: float = 8.0
    cusum_h: float = 20.0
    cusum_cap: float = 3.0
    spike_z: float = 10.0
    min_kwh: float = 1.0
    min_mean_kw: float = 0.5
    zero_kw: float = 0.002
    zero_s: int = 3 * 3600
    zero_min_expected_kw: float = 0.05
    shift_s: int = 8 * 3600
    min_deficit_s: int = 3 * 3600
    max_run_s: int = 24 * 3600
    #: The CUSUMs add one bin's evidence per this much time (a 15-minute bin counts half),
    #: so a 15-minute meter is not flagged twice as fast as a half-hourly one.
    cusum_pace_s: int = 1800

    def __post_init__(self) -> None:
        if self.threshold <= 0 or self.days < 2 or self.neighbours < 0 or self.cusum_pace_s <= 0:
            raise ValueError("threshold and cusum_pace_s must be > 0, days >= 2, neighbours >= 0")


@dataclass(frozen=True, eq=False)
class AnomalyState:
    """One household's detector state: the reference ring and the running statistics.

    ``ring[b % len(ring)]`` is the mean kW of absolute bin ``b`` for the bins
    ``last_bin - len(ring) + 1 .. last_bin`` (NaN where unknown); ``stats`` holds the
    running statistics (:data:`STATS`, integers stored exactly as floats; ``last_bin``
    NaN before the first bin) as one small array, so that stacking the states of a
    batch is two ``np.stack`` calls.
    """

    resolution_s: int
    ring: FloatArray
    stats: FloatArray = field(default_factory=lambda: _fresh_stats())

    @classmethod
    def fresh(cls, resolution_s: int, config: AnomalyConfig) -> AnomalyState:
        if _DAY_S % resolution_s:
            raise ValueError(f"resolution {resolution_s} s must divide a day")
        size = (config.days + 1) * (_DAY_S // resolution_s)
        return cls(resolution_s, np.full(size, np.nan))

    def fits(self, resolution_s: int, config: AnomalyConfig) -> bool:
        size = (config.days + 1) * (_DAY_S // resolution_s)
        return self.resolution_s == resolution_s and len(self.ring) == size

    @property
    def last_bin(self) -> int | None:
        last = self.stats[0]
        return None if np.isnan(last) else int(last)

    def stat(self, name: str) -> float:
        """One running statistic by name (:data:`STATS`)."""
        return float(self.stats[STATS.index(name)])

    def to_array(self) -> FloatArray:
        """Ring then statistics, for the window state's payload."""
        return np.concatenate([self.ring, self.stats])

    @classmethod
    def from_array(cls, resolution_s: int, values: FloatArray) -> AnomalyState:
        """Inverse of :meth:`to_array`."""
        values = np.asarray(values, dtype=np.float64)
        return cls(resolution_s, values[: -len(STATS)].copy(), values[-len(STATS) :].copy())


#: The running statistics of :class:`AnomalyState` (``stats``), in order.
STATS: Final = (
    "last_bin",
    "up",
    "up_start",
    "up_kwh",
    "down",
    "down_start",
    "down_kwh",
    "down_ref_kwh",
    "zero_bins",
    "zero_kwh",
)


def _fresh_stats() -> FloatArray:
    stats = np.zeros(len(STATS))
    stats[0] = np.nan
    return stats


@dataclass(frozen=True, eq=False)
class Verdicts:
    """Per bin: the score, the flag and, where flagged, what and how large.

    ``kind`` indexes :data:`KINDS`; ``kwh`` is the run's energy above (+) or below (-)
    expectation, from ``start_us`` to the end of the bin (``duration_s``); ``expected_kw``
    is the reference median (NaN while warming up: no verdict before ``min_reference``
    reference values).
    """

    score: FloatArray
    flag: npt.NDArray[np.bool_]
    kind: IntArray
    kwh: FloatArray
    duration_s: IntArray
    start_us: IntArray
    expected_kw: FloatArray = field(default_factory=lambda: np.empty(0))

    def take(self, rows: npt.ArrayLike) -> Verdicts:
        """The verdicts of ``rows`` (an index or a mask)."""
        return Verdicts(*(getattr(self, f)[rows] for f in _VERDICT_FIELDS))


_VERDICT_FIELDS: Final = ("score", "flag", "kind", "kwh", "duration_s", "start_us", "expected_kw")


@dataclass
class _Arrays:
    """The states of many households stacked as arrays (the hot loop's working form)."""

    res: IntArray
    size: IntArray
    ring: FloatArray
    last: IntArray
    fresh: npt.NDArray[np.bool_]
    up: FloatArray
    down: FloatArray
    up_kwh: FloatArray
    down_kwh: FloatArray
    down_ref_kwh: FloatArray
    zero_kwh: FloatArray
    up_start: IntArray
    down_start: IntArray
    zero_bins: IntArray

    @classmethod
    def of(cls, states: Sequence[AnomalyState]) -> _Arrays:
        """Stack the states (runs per household per batch: two stacks, no Python loop
        over statistics)."""
        count = len(states)
        size = np.fromiter((len(s.ring) for s in states), np.int64, count)
        if count and (size == size[0]).all():
            ring = np.stack([s.ring for s in states])
        else:
            ring = np.full((count, int(size.max()) if count else 0), np.nan)
            for i, s in enumerate(states):
                ring[i, : len(s.ring)] = s.ring
        table = np.stack([s.stats for s in states]) if count else np.zeros((0, len(STATS)))
        ints = np.nan_to_num(table[:, [0, 2, 5, 8]]).astype(np.int64)
        return cls(
            res=np.fromiter((s.resolution_s for s in states), np.int64, count),
            size=size,
            ring=ring,
            last=ints[:, 0].copy(),
            fresh=np.isnan(table[:, 0]),
            up=table[:, 1].copy(),
            down=table[:, 4].copy(),
            up_kwh=table[:, 3].copy(),
            down_kwh=table[:, 6].copy(),
            down_ref_kwh=table[:, 7].copy(),
            zero_kwh=table[:, 9].copy(),
            up_start=ints[:, 1].copy(),
            down_start=ints[:, 2].copy(),
            zero_bins=ints[:, 3].copy(),
        )

    def states(self) -> list[AnomalyState]:
        """One state per row; rings and statistics are views of read-only stacks."""
        table = np.column_stack(
            [
                np.where(self.fresh, np.nan, self.last),
                self.up,
                self.up_start,
                self.up_kwh,
                self.down,
                self.down_start,
                self.down_kwh,
                self.down_ref_kwh,
                self.zero_bins,
                self.zero_kwh,
            ]
        ).astype(np.float64)
        table.flags.writeable = False
        self.ring.flags.writeable = False
        sizes = zip(self.res.tolist(), self.size.tolist(), strict=True)
        return [
            AnomalyState(res, self.ring[i, :size], table[i]) for i, (res, size) in enumerate(sizes)
        ]


def _quantiles(values: FloatArray, qs: Sequence[float]) -> tuple[list[FloatArray], IntArray]:
    """Row-wise quantiles ignoring NaN (linear, as ``np.nanpercentile``) and the count of
    known values; vectorised (``nanpercentile`` loops over rows)."""
    ordered = np.sort(values, axis=1)  # NaN last
    known = (~np.isnan(values)).sum(axis=1)
    rows = np.arange(len(values))
    top = np.maximum(known - 1, 0)
    out = []
    for q in qs:
        pos = q * top
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, top)
        a, b = ordered[rows, lo], ordered[rows, hi]
        out.append(a + (b - a) * (pos - lo))
    return out, known


def _step(
    cfg: AnomalyConfig, st: _Arrays, h: IntArray, b: IntArray, x: FloatArray
) -> tuple[FloatArray, IntArray, FloatArray, IntArray, FloatArray]:
    """One new bin for each household ``h`` (distinct); updates ``st`` in place.

    Returns score, kind (0 = not flagged), run kWh, run bins and expected kW.
    """
    count = len(h)
    p = _DAY_S // st.res[h]
    n = st.size[h]
    res = st.res[h]
    bin_h = res / 3600.0
    # forget the bins skipped since the last one (a gap): they are unknown
    gap = np.where(st.fresh[h], n, np.minimum(b - st.last[h] - 1, n))
    for g in np.flatnonzero(gap > 0):
        lost = (b[g] - 1 - np.arange(int(gap[g]))) % n[g]
        st.ring[h[g], lost] = np.nan
    # the reference: neighbouring slots on each of the previous days
    days = np.arange(1, cfg.days + 1)
    offsets = np.arange(-cfg.neighbours, cfg.neighbours + 1)
    ref_bins = b[:, None, None] - days[None, :, None] * p[:, None, None] + offsets
    ref = st.ring[h[:, None, None], ref_bins % n[:, None, None]].reshape(count, -1)
    (q_lo, q50, q_hi), known = _quantiles(ref, (1 - cfg.spread_q, 0.5, cfg.spread_q))
    ready = (known >= cfg.min_reference) & ~np.isnan(x)
    floor = np.maximum(cfg.floor_kw, cfg.floor_ratio * np.where(ready, q50, 0.0))
    spread = np.where(x >= q50, np.maximum(q_hi - q50, floor), np.maximum(q50 - q_lo, floor))
    spread = np.where(ready, spread, 1.0)
    # the high side's reference: not below the same slot a week earlier (a household's
    # Saturday is compared with last Saturday too, not only with the weekdays)
    high = q50
    if cfg.days >= 7:
        week = ref.reshape(count, cfg.days, -1)[:, 6]
        (wk,), wk_known = _quantiles(week, (0.5,))
        high = np.where(wk_known > 0, np.maximum(q50, wk), q50)
    # what the actual is measured against: the reference on the side it lies
    expected = np.where(ready, np.where(x > q50, high, q50), np.nan)
    st.ring[h, b % n] = x
    st.last[h] = b
    st.fresh[h] = False

    centre = np.where(x > high, high, np.where(x < q50, q50, x))
    dev = np.where(ready, x - np.where(ready, centre, 0.0), 0.0)
    z = dev / spread
    kwh = dev * bin_h
    clipped = np.clip(z, -cfg.cap_z, cfg.cap_z)
    # persistence: one-sided CUSUMs (a run starts when its sum leaves zero)
    u0, d0 = st.up[h], st.down[h]
    top = cfg.cusum_cap * cfg.cusum_h
    pace = res / cfg.cusum_pace_s
    u1 = np.where(ready, np.clip(u0 + (clipped - cfg.drift) * pace, 0.0, top), u0)
    d1 = np.where(ready, np.clip(d0 + (-clipped - cfg.drift) * pace, 0.0, top), d0)
    u_new, d_new = (u0 <= 0) & (u1 > 0), (d0 <= 0) & (d1 > 0)
    st.up_start[h] = np.where(u_new, b, st.up_start[h])
    st.down_start[h] = np.where(d_new, b, st.down_start[h])
    up_kwh = np.where(u1 > 0, np.where(u_new, 0.0, st.up_kwh[h]) + kwh, 0.0)
    down_kwh = np.where(d1 > 0, np.where(d_new, 0.0, st.down_kwh[h]) + kwh, 0.0)
    ref_kwh = np.where(ready, q50, 0.0) * bin_h
    down_ref = np.where(d1 > 0, np.where(d_new, 0.0, st.down_ref_kwh[h]) + ref_kwh, 0.0)
    st.up_kwh[h], st.down_kwh[h], st.down_ref_kwh[h] = up_kwh, down_kwh, down_ref
    st.up[h], st.down[h] = u1, d1
    # stuck at zero while the household usually uses something
    zero = ready & (x <= cfg.zero_kw) & (q50 >= cfg.zero_min_expected_kw)
    missing = np.isnan(x)
    zero_bins = np.where(zero, st.zero_bins[h] + 1, np.where(missing, st.zero_bins[h], 0))
    zero_kwh = np.where(zero, st.zero_kwh[h] + kwh, np.where(missing, st.zero_kwh[h], 0.0))
    st.zero_bins[h], st.zero_kwh[h] = zero_bins, zero_kwh

    # scores in multiples of each limit; the flag also needs a meaningful deviation
    # each statistic in multiples of its limit, counted only where the deviation means
    # something; the score is the largest, and a bin is flagged when it exceeds threshold
    up_bins = b - st.up_start[h] + 1
    down_bins = b - st.down_start[h] + 1
    longest = cfg.max_run_s // res
    means_up = (up_kwh >= cfg.min_kwh) & (up_kwh >= cfg.min_mean_kw * up_bins * bin_h)
    # a deficit means something when large in kW, or when it lasts and halves consumption
    halved = (down_bins * res >= cfg.shift_s) & (-down_kwh >= 0.5 * down_ref)
    means_down = (-down_kwh >= cfg.min_kwh) & (
        (-down_kwh >= cfg.min_mean_kw * down_bins * bin_h) | halved
    )
    s_up = np.where(ready & (z > cfg.drift) & means_up & (up_bins <= longest), u1, 0.0)
    lasted = (down_bins * res >= cfg.min_deficit_s) & (down_bins <= longest)
    s_down = np.where(ready & (z < -cfg.drift) & means_down & lasted, d1, 0.0)
    s_spike = np.where(ready & (kwh >= cfg.min_kwh), np.maximum(z, 0.0) / cfg.spike_z, 0.0)
    s_zero = np.where(zero & (-zero_kwh >= cfg.min_kwh / 4), zero_bins * res / cfg.zero_s, 0.0)
    s_up, s_down = s_up / cfg.cusum_h, s_down / cfg.cusum_h
    score = np.maximum.reduce([s_up, s_down, s_spike, s_zero])
    t = cfg.threshold
    f_up, f_down, f_spike, f_zero = s_up > t, s_down > t, s_spike > t, s_zero > t

    shift_bins = cfg.shift_s // res
    one = np.ones(count, np.int64)
    kind = np.zeros(count, dtype=np.int64)
    run_kwh = np.zeros(count)
    run_bins = np.zeros(count, dtype=np.int64)
    # lowest priority first: later assignments win; a one-bin excess is a spike
    for flag, k, e, nb in (
        (f_spike | (f_up & (up_bins == 1)), np.full(count, _SPIKE), kwh, one),
        (f_down, np.where(down_bins >= shift_bins, _SHIFT, _DEFICIT), down_kwh, down_bins),
        (f_up & (up_bins > 1), np.where(up_bins >= shift_bins, _SHIFT, _EXCESS), up_kwh, up_bins),
        (f_zero, np.full(count, _ZERO), zero_kwh, zero_bins),
    ):
        kind = np.where(flag, k, kind)
        run_kwh = np.where(flag, e, run_kwh)
        run_bins = np.where(flag, nb, run_bins)
    return score, kind, run_kwh, run_bins, expected


def _verdicts(
    score: FloatArray,
    kind: IntArray,
    kwh: FloatArray,
    bins: IntArray,
    end_bin: IntArray,
    res: IntArray,
    expected: FloatArray,
) -> Verdicts:
    flag = kind > 0
    return Verdicts(
        score=score,
        flag=flag,
        kind=kind,
        kwh=np.where(flag, kwh, 0.0),
        duration_s=np.where(flag, bins * res, 0),
        start_us=np.where(flag, (end_bin - bins + 1) * res * _US, 0),
        expected_kw=expected,
    )


def detect(
    config: AnomalyConfig,
    states: Sequence[AnomalyState],
    household: IntArray,
    bins: IntArray,
    actuals: FloatArray,
) -> tuple[list[AnomalyState], Verdicts]:
    """Feed completed bins (absolute bin numbers at the states' resolution, mean kW) to
    the detector; rows are grouped by household (``household`` indexes ``states``) and in
    time order within each. Vectorised across households, one pass per rank in time.

    A bin at or before a state's ``last_bin`` (a redelivery) is scored as no anomaly and
    changes nothing.
    """
    household = np.asarray(household, dtype=np.int64)
    bins = np.asarray(bins, dtype=np.int64)
    actuals = np.asarray(actuals, dtype=np.float64)
    count = len(household)
    st = _Arrays.of(states)
    score, kwh, expected = np.zeros(count), np.zeros(count), np.full(count, np.nan)
    kind, run = np.zeros(count, np.int64), np.zeros(count, np.int64)
    if count:
        first = np.concatenate([[True], household[1:] != household[:-1]])
        rank = np.arange(count) - np.maximum.accumulate(np.where(first, np.arange(count), 0))
        for r in range(int(rank.max()) + 1):
            rows = np.flatnonzero(rank == r)
            h, b = household[rows], bins[rows]
            new = (b > st.last[h]) | st.fresh[h]
            rows, h, b = rows[new], h[new], b[new]
            if len(rows):
                out = _step(config, st, h, b, actuals[rows])
                score[rows], kind[rows], kwh[rows], run[rows], expected[rows] = out
    res = st.res[household] if count else np.empty(0, np.int64)
    return st.states(), _verdicts(score, kind, kwh, run, bins, res, expected)


def detect_series(
    values: npt.ArrayLike,
    first_bin: int,
    resolution_s: int,
    config: AnomalyConfig | None = None,
) -> Verdicts:
    """Run the detector over whole series ``(series, bins)`` of mean kW, all starting at
    absolute bin ``first_bin`` (benchmarks, calibration, tests): the same :func:`detect`
    the stream calls, fed one bin at a time. Verdicts come back flattened ``(series,
    bins)`` in row-major order."""
    config = config or AnomalyConfig()
    grid = np.atleast_2d(np.asarray(values, dtype=np.float64))
    series, length = grid.shape
    st = _Arrays.of([AnomalyState.fresh(resolution_s, config) for _ in range(series)])
    h = np.arange(series, dtype=np.int64)
    outs = [_step(config, st, h, np.full(series, first_bin + t), grid[:, t]) for t in range(length)]
    columns = zip(*outs, strict=True)
    score, kind, kwh, run, expected = (np.stack(c, axis=1).reshape(-1) for c in columns)
    end = np.tile(first_bin + np.arange(length, dtype=np.int64), series)
    res = np.full(series * length, resolution_s, dtype=np.int64)
    return _verdicts(score, kind, kwh, run, end, res, expected)
