"""Per-household window state: readings resampled to the model's bins, in event time.

Why a small pure dataclass: in Lambda mode the state of every household of a batch is
read from and written back to DynamoDB on every invocation, so it must be small, cheap
to (de)serialise and free of I/O; in a long-running consumer the same objects simply stay
in memory. Everything here runs on the readings' timestamps, never on the wall clock.

The rules (one place, so the stream, the tests and the docs agree):

* **Bins.** Readings are summed per measurement into bins of ``resolution_s`` aligned to
  the epoch, exactly as :func:`services.realtime.core.features.bin_sums` does for
  training; a bin's mean needs :data:`~services.realtime.core.features.MIN_BIN_COVERAGE`
  of its readings (:func:`~services.realtime.core.features.bin_means`).
* **Steps.** The *open* bin is the bin of the newest reading. A step completes when a
  reading arrives in a later bin: step ``T`` (a bin start) forecasts from the
  ``input_steps`` completed bins before ``T``. One delivery may complete several steps
  (a backlog, a record holding a day); at most ``max_catch_up_steps`` of them, the
  newest, are kept; the older ones are *superseded* (counted, never forecast).
* **Gaps.** Runs of at most ``max_gap_s`` of missing bins between known bins are
  interpolated linearly, with the very function training uses
  (:func:`services.realtime.core.features.interpolate_gaps`); a window that still holds a
  missing bin (a longer gap, or missing data at its end: nothing is extrapolated) is not
  forecast, and the stream says why.
* **Late data.** The state keeps ``history_bins`` = ``input_steps + max_gap_bins + 1``
  bins behind the open bin (the margin lets a short gap that straddles the window start
  be interpolated as in training). A late reading whose bin is still kept updates it
  (it counts for every later window); an older one is counted in ``late_ignored`` and
  dropped. With the 15-minute, 4-day model the allowance is 4 days and 2 hours.
* **Duplicates.** A reading published twice (a meter or gateway resending, in another
  record) must not count twice: each kept bin has a bitmap of the reading slots
  (``reading_interval_s`` apart) already summed, and a reading whose slot is taken is
  dropped (the first copy wins) and counted in ``duplicates``. This works when a bin
  holds at most 64 slots (minute meters in 15-minute bins: 15); otherwise readings are
  not deduplicated.
* **Restart.** :meth:`WindowState.to_bytes` / :meth:`WindowState.from_bytes`: a JSON
  header plus the zlib-compressed sums, counts, slot bitmaps and last forecast,
  bit-exact.

:func:`advance` is vectorised across households (one pass of numpy over every reading of
a delivered batch): the per-household Python work is a handful of attribute reads, which
is what keeps the streaming core far below the model's cost per window.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from services.realtime.core.anomaly import AnomalyState
from services.realtime.core.features import (
    DEFAULT_MAX_GAP_S,
    MEASUREMENTS,
    MIN_BIN_COVERAGE,
    TARGET,
    bin_means,
    interpolate_gaps,
)
from shared.batch import ReadingBatch

__all__ = [
    "DEFAULT_MAX_CATCH_UP_STEPS",
    "Advanced",
    "Mode",
    "Rows",
    "StateDecodeError",
    "WindowConfig",
    "WindowState",
    "advance",
    "advance_one",
]

Mode = Literal["model", "fallback"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

US_PER_S: Final = 1_000_000
#: Steps one delivery may complete and still get a forecast each (two days at 15 min).
DEFAULT_MAX_CATCH_UP_STEPS: Final = 192
_NO_BIN: Final = -(2**62)
_MAGIC: Final = b"WSWS"
_VERSION: Final = 1
_PREFIX: Final = struct.Struct("<4sBI")
_ZLIB_LEVEL: Final = 1  # level 6: 6 % smaller, 1.6x slower to write (measured)
#: Reading slots a bin can track for deduplication (one bit each in a uint64).
MAX_SLOTS: Final = 64


class StateDecodeError(ValueError):
    """Bytes that are not a window state this code can read."""


@dataclass(frozen=True)
class WindowConfig:
    """How one kind of window is built (the model's, or a fallback's)."""

    resolution_s: int
    input_steps: int
    measurements: tuple[str, ...] = MEASUREMENTS
    target: str = TARGET
    max_gap_s: int = DEFAULT_MAX_GAP_S
    max_catch_up_steps: int = DEFAULT_MAX_CATCH_UP_STEPS
    min_coverage: float = MIN_BIN_COVERAGE

    def __post_init__(self) -> None:
        if self.resolution_s <= 0 or self.input_steps <= 0 or self.max_catch_up_steps <= 0:
            raise ValueError("resolution_s, input_steps and max_catch_up_steps must be > 0")
        if self.target not in self.measurements:
            raise ValueError(f"target {self.target!r} must be one of the measurements")

    @property
    def max_gap_bins(self) -> int:
        return max(0, self.max_gap_s // self.resolution_s)

    @property
    def history_bins(self) -> int:
        """Completed bins kept behind the open bin (the late-data allowance, in bins)."""
        return self.input_steps + self.max_gap_bins + 1

    @property
    def target_index(self) -> int:
        return self.measurements.index(self.target)

    @functools.cached_property
    def shape(self) -> tuple[int, int, tuple[str, ...], int]:
        """What a state must match to be advanced with this config."""
        return (self.resolution_s, self.input_steps, self.measurements, self.history_bins)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class WindowState:
    """One household's recent bins, stream position and last forecast.

    ``sums``/``counts`` hold the bins ``head - history_bins .. head`` (oldest first) of
    ``measurements`` and ``seen`` the bitmap of reading slots summed in each bin;
    ``head`` and ``first`` are absolute bin numbers
    (``timestamp_us // (resolution_s * 1e6)``), ``None`` before the first reading.
    ``position`` is the highest stream position (Kinesis sequence number) applied, so a
    redelivered record is recognised. ``forecast`` is the last forecast's
    ``(lower, value, upper)`` kW per step, from ``forecast_start_us`` on: the anomaly check
    compares the next completed bins against it. ``anomaly`` is the anomaly detector's
    state (:mod:`services.realtime.core.anomaly`: its reference days), ``None`` before the
    first completed bin.
    """

    household_id: str
    mode: Mode
    resolution_s: int
    input_steps: int
    measurements: tuple[str, ...]
    reading_interval_s: int
    sums: FloatArray
    counts: IntArray
    seen: npt.NDArray[np.uint64]
    head: int | None = None
    first: int | None = None
    last_ts_us: int | None = None
    position: int = 0
    late_ignored: int = 0
    forecast_start_us: int | None = None
    forecast_resolution_s: int = 0
    forecast: FloatArray = dataclasses.field(default_factory=lambda: np.empty((0, 3)))
    fallback_reason: str | None = None
    anomaly: AnomalyState | None = None

    def __post_init__(self) -> None:
        shape = (self.sums.shape[0], len(self.measurements))
        if self.sums.shape != shape or self.counts.shape != shape or shape[0] <= self.input_steps:
            raise ValueError(f"sums and counts must be (bins > input_steps, {shape[1]})")
        if self.seen.shape != (shape[0],):
            raise ValueError("seen must hold one bitmap per bin")
        if self.forecast.ndim != 2 or self.forecast.shape[1] != 3:
            raise ValueError("forecast must be (steps, 3): lower, value, upper")
        for name in ("sums", "counts", "seen", "forecast"):
            _frozen(getattr(self, name))

    @classmethod
    def fresh(
        cls,
        household_id: str,
        config: WindowConfig,
        *,
        mode: Mode = "model",
        reading_interval_s: int = 60,
        position: int = 0,
        fallback_reason: str | None = None,
    ) -> WindowState:
        """An empty state (no reading yet) shaped for ``config``."""
        bins = config.history_bins + 1
        m = len(config.measurements)
        return cls(
            household_id=household_id,
            mode=mode,
            resolution_s=config.resolution_s,
            input_steps=config.input_steps,
            measurements=config.measurements,
            reading_interval_s=int(reading_interval_s),
            sums=np.zeros((bins, m)),
            counts=np.zeros((bins, m), dtype=np.int64),
            seen=np.zeros(bins, dtype=np.uint64),
            position=position,
            fallback_reason=fallback_reason,
        )

    @property
    def history_bins(self) -> int:
        return self.sums.shape[0] - 1

    @property
    def head_us(self) -> int | None:
        """Start of the open bin (UTC µs); the next step to complete is the bin after it."""
        return None if self.head is None else self.head * self.resolution_s * US_PER_S

    def fits(self, config: WindowConfig) -> bool:
        """Whether this state was built for ``config`` (else a new model needs a reset)."""
        shape = (self.resolution_s, self.input_steps, self.measurements, len(self.sums) - 1)
        return shape == config.shape

    def replace(self, **changes: Any) -> WindowState:
        """A copy with ``changes`` (validated like a new state)."""
        return dataclasses.replace(self, **changes)

    def _evolve(self, **changes: Any) -> WindowState:
        """:meth:`replace` without re-validation, for the hot path of :func:`advance` and
        the stream (one per household per batch; ``dataclasses.replace`` re-runs
        ``__post_init__`` and cost more than the rest of the step). Callers pass arrays
        of the right shapes, fresh from the same computation."""
        new = object.__new__(WindowState)
        vars(new).update(self.__dict__)
        vars(new).update(changes)
        for name in ("sums", "counts", "seen", "forecast"):
            if name in changes:
                changes[name].flags.writeable = False
        return new

    # ------------------------------------------------------------------- persistence

    def to_bytes(self) -> bytes:
        """Compact, versioned bytes: a JSON header, then zlib(sums, counts, forecast).

        >>> s = WindowState.fresh("h1", WindowConfig(900, 4), position=7)
        >>> WindowState.from_bytes(s.to_bytes()).position
        7
        """
        header = {
            "household_id": self.household_id,
            "mode": self.mode,
            "resolution_s": self.resolution_s,
            "input_steps": self.input_steps,
            "bins": self.sums.shape[0],
            "measurements": list(self.measurements),
            "reading_interval_s": self.reading_interval_s,
            "head": self.head,
            "first": self.first,
            "last_ts_us": self.last_ts_us,
            "position": str(self.position),  # Kinesis sequence numbers exceed 64 bits
            "late_ignored": self.late_ignored,
            "forecast_start_us": self.forecast_start_us,
            "forecast_resolution_s": self.forecast_resolution_s,
            "forecast_steps": self.forecast.shape[0],
            "fallback_reason": self.fallback_reason,
        }
        if self.anomaly is not None:
            header["anomaly"] = {
                "resolution_s": self.anomaly.resolution_s,
                "values": len(self.anomaly.ring) + len(self.anomaly.stats),
            }
        text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
        payload = b"".join(
            [
                np.ascontiguousarray(self.sums, dtype="<f8").tobytes(),
                np.ascontiguousarray(self.counts, dtype="<u4").tobytes(),
                np.ascontiguousarray(self.seen, dtype="<u8").tobytes(),
                np.ascontiguousarray(self.forecast, dtype="<f8").tobytes(),
                b""
                if self.anomaly is None
                else np.ascontiguousarray(self.anomaly.to_array(), dtype="<f8").tobytes(),
            ]
        )
        return (
            _PREFIX.pack(_MAGIC, _VERSION, len(text)) + text + zlib.compress(payload, _ZLIB_LEVEL)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> WindowState:
        """Inverse of :meth:`to_bytes`; raises :class:`StateDecodeError` on anything else."""
        try:
            magic, version, size = _PREFIX.unpack_from(data)
            if magic != _MAGIC or version != _VERSION:
                raise StateDecodeError(f"not a window state (magic {magic!r}, v{version})")
            start = _PREFIX.size
            header = json.loads(data[start : start + size])
            payload = zlib.decompress(data[start + size :])
            bins, m = header["bins"], len(header["measurements"])
            steps = header["forecast_steps"]
            cells = bins * m
            detector = header.get("anomaly")  # absent in states written before it existed
            extra = detector["values"] if detector else 0
            if len(payload) != cells * 12 + bins * 8 + steps * 3 * 8 + extra * 8:
                raise StateDecodeError("window state payload has the wrong size")
            sums = np.frombuffer(payload, "<f8", cells).reshape(bins, m).astype(np.float64)
            counts = np.frombuffer(payload, "<u4", cells, cells * 8).reshape(bins, m)
            seen = np.frombuffer(payload, "<u8", bins, cells * 12)
            offset = cells * 12 + bins * 8
            forecast = np.frombuffer(payload, "<f8", steps * 3, offset).reshape(steps, 3)
            anomaly = None
            if detector:
                values = np.frombuffer(payload, "<f8", extra, offset + steps * 24)
                anomaly = AnomalyState.from_array(detector["resolution_s"], values)
            return cls(
                household_id=header["household_id"],
                mode=header["mode"],
                resolution_s=header["resolution_s"],
                input_steps=header["input_steps"],
                measurements=tuple(header["measurements"]),
                reading_interval_s=header["reading_interval_s"],
                sums=sums,
                counts=counts.astype(np.int64),
                seen=seen.astype(np.uint64),
                head=header["head"],
                first=header["first"],
                last_ts_us=header["last_ts_us"],
                position=int(header["position"]),
                late_ignored=header["late_ignored"],
                forecast_start_us=header["forecast_start_us"],
                forecast_resolution_s=header["forecast_resolution_s"],
                forecast=forecast.astype(np.float64),
                fallback_reason=header["fallback_reason"],
                anomaly=anomaly,
            )
        except StateDecodeError:
            raise
        except (struct.error, ValueError, KeyError, TypeError, zlib.error) as error:
            raise StateDecodeError(f"corrupt window state: {error}") from error


@dataclass(frozen=True, eq=False)
class Rows:
    """Readings of many households as columns: ``household[i]`` indexes the states."""

    household: IntArray
    timestamps_us: IntArray
    values: FloatArray  # (rows, measurements), NaN = absent

    @classmethod
    def from_batches(
        cls, batches: Sequence[tuple[int, ReadingBatch]], measurements: Sequence[str]
    ) -> Rows:
        """``(state index, batch)`` pairs -> one column set (measurement columns as named)."""
        if not batches:
            return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty((0, 0)))
        return cls(
            household=np.concatenate([np.full(len(b), i, dtype=np.int64) for i, b in batches]),
            timestamps_us=np.concatenate([b.timestamps_us for _, b in batches]),
            values=np.column_stack(
                [np.concatenate([b.columns[name] for _, b in batches]) for name in measurements]
            ),
        )


@dataclass(frozen=True, eq=False)
class Advanced:
    """What :func:`advance` did: new states, and every completed step with its window.

    Steps are grouped by household and in time order. ``step_bins`` are absolute bin
    numbers ``T`` (the forecast's first step); ``windows[i]`` are the
    ``input_steps`` bins before ``T`` (means, short gaps interpolated, NaN where unknown);
    ``actuals[i]`` is the raw mean of the target in bin ``T - 1`` (NaN if missing), and
    ``end_known[i]`` whether every measurement of bin ``T - 1`` is known. A window is
    complete when it holds no NaN *and* its last bin is known: a gap is filled only
    between bins before ``T``, so a window never depends on data after its step, and
    the same readings give the same windows however they are split into deliveries.
    """

    step_household: IntArray
    step_bins: IntArray
    windows: FloatArray
    actuals: FloatArray
    end_known: npt.NDArray[np.bool_]
    late_ignored: IntArray
    duplicates: IntArray
    superseded: IntArray
    #: The states given to :func:`advance` and what changed in each; the new states are
    #: built on demand (:attr:`states`), or once with more changes (:meth:`evolve`).
    before: Sequence[WindowState] = ()
    changes: Sequence[dict[str, Any]] = ()

    @functools.cached_property
    def states(self) -> list[WindowState]:
        """The new states, in the order given."""
        return [self.evolve(i) for i in range(len(self.before))]

    def evolve(self, i: int, **more: Any) -> WindowState:
        """State ``i`` after :func:`advance`, with ``more`` changes (one copy, no checks)."""
        return self.before[i]._evolve(**self.changes[i], **more)


def advance(config: WindowConfig, states: Sequence[WindowState], rows: Rows) -> Advanced:
    """Add ``rows`` to ``states`` (every state must have at least one row) in one pass.

    Pure and deterministic: the same states and rows give the same result, which is what
    makes a retried batch produce the same forecasts.
    """
    h_count = len(states)
    n, history, cap = config.input_steps, config.history_bins, config.max_catch_up_steps
    ring = history + 1
    res_us = config.resolution_s * US_PER_S
    m = len(config.measurements)
    for state in states:
        if not state.fits(config):
            raise ValueError(f"state of {state.household_id} does not fit {config}")
    if rows.values.shape[1:] != (m,) and len(rows.household):
        raise ValueError(f"rows must have {m} measurement columns")
    hidx = rows.household
    bins = rows.timestamps_us // res_us
    if h_count == 0:
        empty = np.empty(0, dtype=np.int64)
        return Advanced(
            empty, empty, np.empty((0, n, m)), np.empty(0), np.empty(0, bool), empty, empty, empty
        )
    if np.bincount(hidx, minlength=h_count).min() == 0:
        raise ValueError("every state given to advance needs at least one row")

    head0 = np.array([_NO_BIN if s.head is None else s.head for s in states], dtype=np.int64)
    first0 = np.array([_NO_BIN if s.first is None else s.first for s in states], dtype=np.int64)
    has = head0 != _NO_BIN
    head1 = head0.copy()
    np.maximum.at(head1, hidx, bins)
    lowest = np.full(h_count, np.iinfo(np.int64).max)
    np.minimum.at(lowest, hidx, bins)

    # Bins that can still be stored: the kept history, and no more catch-up than `cap`.
    g0 = np.maximum(np.where(has, head0 - history, lowest), head1 - history - cap)
    keep = bins >= g0[hidx]
    late = np.bincount(hidx[~keep], minlength=h_count).astype(np.int64)
    # Steps T in (t_lo, head1]: the bins entered since the last open bin.
    t_lo = np.where(has, head0, g0)
    all_steps = head1 - t_lo
    n_steps = np.minimum(all_steps, cap)
    t_first = head1 - n_steps + 1
    gstart = np.minimum(g0, np.minimum(t_first, head1) - history)

    # One flat grid of bins, household after household: [gstart, head1] each.
    glen = head1 - gstart + 1
    offsets = np.concatenate([[0], np.cumsum(glen)[:-1]]).astype(np.int64)
    total = int(glen.sum())
    grid_h = np.repeat(np.arange(h_count), glen)
    grid_bin = gstart[grid_h] + np.arange(total) - offsets[grid_h]
    sums = np.zeros((total, m))
    counts = np.zeros((total, m), dtype=np.int64)
    seen = np.zeros(total, dtype=np.uint64)
    if has.any():
        # The kept bins of each stored state, copied to their place in the grid: the
        # overlap of [head0 - history, head0] with [gstart, head1], one flat gather.
        low = np.maximum(gstart, head0 - history)
        size = np.where(has, np.maximum(head0 - low + 1, 0), 0)
        within = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size)
        dst = np.repeat(offsets + low - gstart, size) + within
        src = np.repeat(np.arange(h_count) * ring + low - (head0 - history), size) + within
        sums[dst] = np.concatenate([s.sums for s in states])[src]
        counts[dst] = np.concatenate([s.counts for s in states])[src]
        seen[dst] = np.concatenate([s.seen for s in states])[src]
    flat = offsets[hidx] + bins - gstart[hidx]
    keep, duplicates = _first_copies(config, states, rows, hidx, bins, flat, keep, seen)
    kept_h, kept_values = hidx[keep], rows.values[keep]
    flat = flat[keep]
    present = ~np.isnan(kept_values)
    for j in range(m):
        # np.add.at adds in row order onto the stored sums: the same operations, in the same
        # order, as one pass over all readings, so a bin split across deliveries (or a
        # restart) gives bit-identical sums.
        np.add.at(sums[:, j], flat[present[:, j]], kept_values[present[:, j], j])
        counts[:, j] += np.bincount(flat[present[:, j]], minlength=total)

    means = _means(config, states, sums, counts, grid_h)
    filled = _interpolate(config, means, grid_h, grid_bin, head1, offsets, glen)

    # Every kept step's window and the actual of the bin it completes.
    s_total = int(n_steps.sum())
    step_h = np.repeat(np.arange(h_count), n_steps)
    step_off = np.concatenate([[0], np.cumsum(n_steps)[:-1]]).astype(np.int64)
    step_bins = t_first[step_h] + np.arange(s_total) - step_off[step_h]
    start = offsets[step_h] + step_bins - n - gstart[step_h]
    windows = filled[start[:, None] + np.arange(n)]
    actuals = means[start + n - 1, config.target_index]
    end_known = ~np.isnan(means[start + n - 1]).any(axis=1)

    ring_index = (offsets + head1 - history - gstart)[:, None] + np.arange(ring)
    ring_sums, ring_counts, ring_seen = sums[ring_index], counts[ring_index], seen[ring_index]
    kept_lowest = np.full(h_count, np.iinfo(np.int64).max)
    np.minimum.at(kept_lowest, kept_h, bins[keep])
    newest = np.full(h_count, np.iinfo(np.int64).min)
    np.maximum.at(newest, hidx, rows.timestamps_us)
    first1 = np.where(has, np.minimum(first0, kept_lowest), kept_lowest)
    known_first = first1 < 2**62  # all rows of a fresh household late: no first bin yet
    heads, firsts, newest_l, late_l = (
        head1.tolist(),
        first1.tolist(),
        newest.tolist(),
        late.tolist(),
    )
    known_l = known_first.tolist()
    changes = [
        {
            "head": heads[i],
            "first": firsts[i] if known_l[i] else None,
            "last_ts_us": newest_l[i] if s.last_ts_us is None else max(newest_l[i], s.last_ts_us),
            "sums": ring_sums[i].copy(),
            "counts": ring_counts[i].copy(),
            "seen": ring_seen[i].copy(),
            "late_ignored": s.late_ignored + late_l[i],
        }
        for i, s in enumerate(states)
    ]
    return Advanced(
        before=states,
        changes=changes,
        step_household=step_h,
        step_bins=step_bins,
        windows=windows,
        actuals=actuals,
        end_known=end_known,
        late_ignored=late,
        duplicates=duplicates,
        superseded=(all_steps - n_steps).astype(np.int64),
    )


def _first_copies(
    config: WindowConfig,
    states: Sequence[WindowState],
    rows: Rows,
    hidx: IntArray,
    bins: IntArray,
    flat: IntArray,
    keep: npt.NDArray[np.bool_],
    seen: npt.NDArray[np.uint64],
) -> tuple[npt.NDArray[np.bool_], IntArray]:
    """Drop readings whose slot in their bin is taken (stored, or earlier in ``rows``);
    mark the slots of the others in ``seen``. Returns the new keep mask and the
    duplicates per household."""
    h_count = len(states)
    interval_us = np.array([s.reading_interval_s for s in states], dtype=np.int64) * US_PER_S
    res_us = config.resolution_s * US_PER_S
    tracked = (res_us // interval_us <= MAX_SLOTS)[hidx] & keep
    rows_t = np.flatnonzero(tracked)
    if not len(rows_t):
        return keep, np.zeros(h_count, dtype=np.int64)
    slot = (
        (rows.timestamps_us[rows_t] - bins[rows_t] * res_us) // interval_us[hidx[rows_t]]
    ).astype(np.uint64)
    key = flat[rows_t].astype(np.uint64) * np.uint64(MAX_SLOTS) + slot
    _, first = np.unique(key, return_index=True)
    repeated = np.ones(len(rows_t), dtype=bool)
    repeated[first] = False
    bit = np.left_shift(np.uint64(1), slot)
    stored = (seen[flat[rows_t]] & bit) != 0
    duplicate = repeated | stored
    np.bitwise_or.at(seen, flat[rows_t[~duplicate]], bit[~duplicate])
    keep = keep.copy()
    keep[rows_t[duplicate]] = False
    return keep, np.bincount(hidx[rows_t[duplicate]], minlength=h_count).astype(np.int64)


def _means(
    config: WindowConfig,
    states: Sequence[WindowState],
    sums: FloatArray,
    counts: IntArray,
    grid_h: IntArray,
) -> FloatArray:
    """``bin_means`` of the grid, per reading interval (minute meters, half-hour meters)."""
    intervals = np.array([s.reading_interval_s for s in states], dtype=np.int64)
    unique = np.unique(intervals)
    if len(unique) == 1:
        return bin_means(
            sums,
            counts,
            config.resolution_s,
            reading_interval_s=int(unique[0]),
            min_coverage=config.min_coverage,
        )
    means = np.empty_like(sums)
    row_interval = intervals[grid_h]
    for interval in unique:
        rows = row_interval == interval
        means[rows] = bin_means(
            sums[rows],
            counts[rows],
            config.resolution_s,
            reading_interval_s=int(interval),
            min_coverage=config.min_coverage,
        )
    return means


def _interpolate(
    config: WindowConfig,
    means: FloatArray,
    grid_h: IntArray,
    grid_bin: IntArray,
    head1: IntArray,
    offsets: IntArray,
    glen: IntArray,
) -> FloatArray:
    """Short gaps of completed bins filled, household by household (only where needed).

    The open bin is left out: it is still filling, so it is neither interpolated nor
    used as an end point.
    """
    completed = (grid_bin < head1[grid_h])[:, None]
    missing = np.isnan(means) & completed
    if not missing.any() or config.max_gap_bins < 1:
        return means
    # Only households with a missing cell between two known cells of its column can
    # change (leading NaN before a household's first reading, the usual case, cannot).
    known = np.cumsum(~np.isnan(means) & completed, axis=0)
    base = np.where(offsets[:, None] > 0, known[np.maximum(offsets - 1, 0)], 0)
    total = known[offsets + glen - 1]
    seen_before = known - base[grid_h] > 0
    seen_after = total[grid_h] - known > 0
    interior = (missing & seen_before & seen_after).any(axis=1)
    if not interior.any():
        return means
    filled = means.copy()
    for h in np.unique(grid_h[interior]):
        a, b = int(offsets[h]), int(offsets[h] + glen[h] - 1)
        filled[a:b] = interpolate_gaps(means[a:b], config.max_gap_bins)
    return filled


def advance_one(
    config: WindowConfig, state: WindowState, batch: ReadingBatch
) -> tuple[WindowState, Advanced]:
    """:func:`advance` for one household's batch (tests, notebooks, simple consumers).

    >>> import numpy as np
    >>> cfg = WindowConfig(900, 2, measurements=("global_active_power_kw",))
    >>> minutes = np.arange(0, 46) * 60_000_000  # 00:00 .. 00:45
    >>> b = ReadingBatch("h1", minutes, {"global_active_power_kw": np.ones(46)})
    >>> state, done = advance_one(cfg, WindowState.fresh("h1", cfg), b)
    >>> state.head_us // 60_000_000, done.step_bins.tolist(), done.windows[-1].ravel().tolist()
    (45, [1, 2, 3], [1.0, 1.0])
    """
    if len(batch) == 0:
        return state, advance(config, [], Rows.from_batches([], config.measurements))
    result = advance(config, [state], Rows.from_batches([(0, batch)], config.measurements))
    return result.states[0], result
