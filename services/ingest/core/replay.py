"""Replay the real UCI minute file as if it were live: time-shifted, paced, N households.

Why: the streaming services need a realistic live feed, and the only minute-resolution
meter we have is the UCI house. The replay streams its real minutes (gaps stay gaps)
with a simulated clock that runs ``speed`` times faster than the wall clock.

* **Time shift** (:func:`replay_shift_us`): ``start="now"`` moves the first reading to
  the current minute (timestamps stay on whole minutes); ``"original"`` keeps the file's
  timestamps; a datetime moves the first reading there.
* **Households** (:func:`plan_replay`): household ``i`` replays the file from a seeded
  whole-day offset (wrapping around at the end) and scaled by a seeded factor, so the N
  series differ but each is real data with the house's time-of-day pattern. Household 1
  (``uci-0001``) is the file verbatim. Every household replays every row of the file
  exactly once, so the totals are exact: ``N x`` the complete rows, ``N x`` the gaps.
  (After the wrap the time of day jumps by ``len(file) mod 1440`` minutes; 0 for the
  shipped April slice.)
* **Pacing** (:class:`Pacer`, :func:`next_window_end`): a window of simulated time is
  published once the simulated clock has passed its end (a minute is sent when it has
  elapsed), so readings never come from the simulated future. A publisher slower than
  the clock makes the next window larger (catching up in fewer, fuller records) up to a
  bound, instead of falling ever further behind with tiny records.

The module is pure: the clock is a number handed in, sleeping is the driver's business
(``services.ingest.sources.run_replay``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from services.ingest.core.fleet import (
    MINUTE_US,
    SCALED_UCI_COLUMNS,
    UCI_SCALE_RANGE,
    FleetSlice,
    Int64Array,
    UciSeries,
)
from shared.batch import datetime_to_us

__all__ = [
    "DEFAULT_FLUSH_EVERY_S",
    "KINESIS_RECORDS_PER_SHARD_S",
    "Pacer",
    "ReplayPlan",
    "ReplayStart",
    "flush_interval_for",
    "fresh_id_prefix",
    "next_window_end",
    "parse_speed",
    "plan_replay",
    "replay_household_ids",
    "replay_shift_us",
    "replay_window",
    "window_step_us",
]

ReplayStart = Literal["now", "original"] | dt.datetime

KINESIS_RECORDS_PER_SHARD_S: Final = 1000
"""A Kinesis shard accepts at most 1,000 records/s (and 1 MiB/s) of writes."""

DEFAULT_FLUSH_EVERY_S: Final = 1.0
"""Wall seconds between flushes when paced.

Each flush sends one record per household holding everything that household measured
since the previous flush (``speed x 1 s`` of simulated time: 10 minutes at speed 600).
So the stream receives ``households / flush_every_s`` records/s whatever the speed:
with the default, up to 1,000 households per shard stay within a shard's 1,000
records/s, and a reading waits at most ~1 s of wall time before it is sent (what a
live dashboard notices). More households per shard: use :func:`flush_interval_for`.
"""


def parse_speed(text: str | float) -> float:
    """``"600"`` -> 600.0; ``"max"`` or ``0`` -> ``inf`` (as fast as possible)."""
    if isinstance(text, str) and text.strip().lower() in ("max", "inf", "unpaced"):
        return math.inf
    speed = float(text)
    if math.isnan(speed) or speed < 0:
        raise ValueError(f"speed must be >= 0 or 'max', got {text!r}")
    return math.inf if speed == 0 else speed


def flush_interval_for(households: int, shards: int, *, headroom: float = 0.8) -> float:
    """The shortest flush interval that keeps every shard under ``headroom`` x 1,000 records/s.

    One record per household per flush, spread over the shards by household id:

    >>> flush_interval_for(1000, 4)
    1.0
    >>> flush_interval_for(10_000, 4)
    3.125
    """
    if households < 1 or shards < 1 or not 0 < headroom <= 1:
        raise ValueError("need households >= 1, shards >= 1 and 0 < headroom <= 1")
    return max(
        DEFAULT_FLUSH_EVERY_S, households / (shards * KINESIS_RECORDS_PER_SHARD_S * headroom)
    )


def window_step_us(speed: float, flush_every_s: float) -> int:
    """Simulated time per paced flush: ``speed x flush_every_s``, in whole minutes (>= 1)."""
    if flush_every_s <= 0:
        raise ValueError("flush_every_s must be positive")
    if math.isinf(speed):
        raise ValueError("an unpaced replay has no flush interval")
    minutes = max(1, round(speed * flush_every_s / 60))
    return minutes * MINUTE_US


@dataclass(frozen=True)
class Pacer:
    """The simulated clock: ``sim = sim_start + (wall - wall_start) x speed``.

    ``speed = inf`` means unpaced: simulated time is whatever has been published.
    """

    speed: float
    sim_start_us: int
    wall_start_s: float

    @property
    def paced(self) -> bool:
        return not math.isinf(self.speed)

    def sim_us(self, wall_s: float) -> int:
        """Simulated time (UTC microseconds) at wall time ``wall_s``."""
        if not self.paced:
            raise ValueError("an unpaced replay has no simulated clock")
        return self.sim_start_us + math.floor((wall_s - self.wall_start_s) * self.speed * 1e6)

    def wall_s(self, sim_us: int) -> float:
        """Wall time at which the simulated clock reaches ``sim_us``."""
        if not self.paced:
            raise ValueError("an unpaced replay has no simulated clock")
        return self.wall_start_s + (sim_us - self.sim_start_us) / 1e6 / self.speed


def next_window_end(
    t0_us: int,
    *,
    start_us: int,
    end_us: int,
    step_us: int,
    max_step_us: int,
    sim_now_us: int | None,
) -> int:
    """End of the next window to publish, from ``t0_us``.

    Unpaced (``sim_now_us is None``): ``max_step_us`` at a time. Paced: the last step
    boundary the simulated clock has passed, at least one step and at most
    ``max_step_us`` ahead, so a late publisher catches up with bigger windows.

    >>> next_window_end(0, start_us=0, end_us=10**9, step_us=100, max_step_us=1000,
    ...                 sim_now_us=350)
    300
    """
    if sim_now_us is None:
        return min(end_us, t0_us + max_step_us)
    elapsed_steps = (sim_now_us - start_us) // step_us
    due = start_us + elapsed_steps * step_us
    return min(end_us, t0_us + max(step_us, max_step_us), max(t0_us + step_us, due))


# ------------------------------------------------------------------------- households


@dataclass(frozen=True, eq=False)
class ReplayPlan:
    """The replayed households: id, whole-day offset into the file, power scale."""

    household_ids: tuple[str, ...]
    day_offsets: Int64Array
    scales: np.ndarray

    def __len__(self) -> int:
        return len(self.household_ids)


def replay_household_ids(households: int, prefix: str = "uci") -> tuple[str, ...]:
    """``prefix-0001`` ... : the ids of a replay's households."""
    width = max(4, len(str(households)))
    return tuple(f"{prefix}-{i + 1:0{width}d}" for i in range(households))


def fresh_id_prefix(
    households: int, has_data: Callable[[str], bool], *, base: str = "uci", tries: int = 999
) -> str:
    """``base``, or ``base2``, ``base3`` ...: the first prefix whose first household has no
    data yet, so a new replay never silently mixes into a household that is running."""
    for n in range(1, tries + 1):
        prefix = base if n == 1 else f"{base}{n}"
        if not has_data(replay_household_ids(households, prefix)[0]):
            return prefix
    raise ValueError(f"every prefix {base} .. {base}{tries} already has data")


def plan_replay(households: int, *, minutes: int, seed: int = 0, prefix: str = "uci") -> ReplayPlan:
    """N households over a file of ``minutes`` rows; same seed -> same households.

    Household 1 is the file itself (offset 0, scale 1). The others start a seeded number
    of whole days into the file (so the time of day lines up) and are scaled within
    ``UCI_SCALE_RANGE`` (see ``core.fleet``: sub-meter tolerance).
    """
    if households < 1:
        raise ValueError("households must be >= 1")
    rng = np.random.default_rng(seed)
    days = max(1, minutes // 1440)
    offsets = rng.integers(0, days, households)
    scales = rng.uniform(*UCI_SCALE_RANGE, households)
    offsets[0], scales[0] = 0, 1.0
    return ReplayPlan(
        replay_household_ids(households, prefix),
        offsets.astype(np.int64),
        scales,
    )


def replay_shift_us(series_start_us: int, start: ReplayStart, *, now_us: int) -> int:
    """Microseconds added to every file timestamp.

    ``"now"`` puts the first reading on the current minute (floored, so every replayed
    timestamp stays on a whole minute, like the file's); ``"original"`` adds nothing;
    an aware datetime puts the first reading there.
    """
    if start == "original":
        return 0
    if start == "now":
        return now_us // MINUTE_US * MINUTE_US - series_start_us
    if isinstance(start, dt.datetime):
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        return datetime_to_us(start) - series_start_us
    raise ValueError(f"start must be 'now', 'original' or a datetime, got {start!r}")


def replay_window(
    series: UciSeries, plan: ReplayPlan, *, shift_us: int, k0: int, k1: int
) -> FleetSlice:
    """Replay minutes ``k0 <= k < k1`` (counted from the first) of every household.

    Household ``i`` at replay minute ``k`` shows file row ``(k + 1440 x offset_i) mod n``,
    stamped ``series.start + shift + k minutes``.
    """
    n = len(series)
    if not 0 <= k0 <= k1 <= n:
        raise ValueError(f"window {k0}:{k1} outside the replay of {n} minutes")
    k = np.arange(k0, k1, dtype=np.int64)
    rows = (k[None, :] + plan.day_offsets[:, None] * 1440) % n
    scales = plan.scales[:, None]
    columns = {
        name: column[rows] * scales if name in SCALED_UCI_COLUMNS else column[rows]
        for name, column in series.columns.items()
    }
    stamps = series.start_us + shift_us + k * MINUTE_US
    return FleetSlice(plan.household_ids, stamps, columns, series.present[rows])
