"""Model inputs, defined once for training and for streaming inference.

A household's minute readings are averaged into fixed bins (15 minutes by default) of
the seven UCI measurements; calendar features (time of day, day of week, as sine and
cosine) are derived from each bin's start. Training (whole file, pandas) and the
streaming window state (incremental) both go through :func:`bin_sums` and
:func:`bin_means`, and fill short gaps with :func:`interpolate_gaps`, so the model sees
exactly the same numbers in both.

Sums and counts are kept instead of means because they add up: a late reading, or a bin
split across two Lambda batches, just adds to its bin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from shared.batch import ReadingBatch

#: The seven measurements of the UCI meter, in model order (all per-minute averages).
MEASUREMENTS: Final = (
    "global_active_power_kw",
    "global_reactive_power_kw",
    "voltage_v",
    "global_intensity_a",
    "sub_metering_1_wh",
    "sub_metering_2_wh",
    "sub_metering_3_wh",
)
TARGET: Final = "global_active_power_kw"
CALENDAR: Final = ("time_of_day_sin", "time_of_day_cos", "day_of_week_sin", "day_of_week_cos")
FEATURES: Final = MEASUREMENTS + CALENDAR

#: A bin holding fewer readings than this fraction of its minutes counts as missing.
MIN_BIN_COVERAGE: Final = 0.5

#: Longest run of missing bins filled by interpolation in model inputs.
DEFAULT_MAX_GAP_S: Final = 2 * 3600

_US_PER_S: Final = 1_000_000
_DAY_S: Final = 86_400
_WEEK_S: Final = 7 * _DAY_S


def bin_starts(timestamps_us: npt.NDArray[np.int64], resolution_s: int) -> npt.NDArray[np.int64]:
    """Start (UTC µs) of the bin each timestamp falls in; bins are aligned to the epoch."""
    step = resolution_s * _US_PER_S
    return (np.asarray(timestamps_us, dtype=np.int64) // step) * step


def bin_sums(
    batch: ReadingBatch, resolution_s: int, measurements: Sequence[str] = MEASUREMENTS
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Per-bin sums and counts of each measurement: ``(starts, sums[n, m], counts[n, m])``.

    NaN (absent) values are not counted, so a reading without voltage still adds to the
    power bins.

    >>> import numpy as np
    >>> b = ReadingBatch("h", np.array([0, 60_000_000, 900_000_000]),
    ...                  {"global_active_power_kw": np.array([1.0, 3.0, 5.0])})
    >>> starts, sums, counts = bin_sums(b, 900, ["global_active_power_kw"])
    >>> starts.tolist(), sums[:, 0].tolist(), counts[:, 0].tolist()
    ([0, 900000000], [4.0, 5.0], [2, 1])
    """
    starts_all = bin_starts(batch.timestamps_us, resolution_s)
    starts, inverse = np.unique(starts_all, return_inverse=True)
    sums = np.zeros((len(starts), len(measurements)))
    counts = np.zeros((len(starts), len(measurements)), dtype=np.int64)
    for j, name in enumerate(measurements):
        values = np.asarray(batch.columns[name], dtype=np.float64)
        present = ~np.isnan(values)
        np.add.at(sums[:, j], inverse[present], values[present])
        np.add.at(counts[:, j], inverse[present], 1)
    return starts, sums, counts


def bin_means(
    sums: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    resolution_s: int,
    *,
    reading_interval_s: int = 60,
    min_coverage: float = MIN_BIN_COVERAGE,
) -> npt.NDArray[np.float64]:
    """Means per bin, NaN where a bin holds too few readings to be trusted."""
    needed = max(1, int(np.ceil(min_coverage * resolution_s / reading_interval_s)))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    means[counts < needed] = np.nan
    return means


def calendar_features(starts_us: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Time of day and day of week of each bin start, as sine/cosine pairs (UTC)."""
    seconds = np.asarray(starts_us, dtype=np.int64) // _US_PER_S
    day_angle = 2 * np.pi * (seconds % _DAY_S) / _DAY_S
    # 1970-01-01 was a Thursday; shift so Monday 00:00 is angle 0.
    week_angle = 2 * np.pi * ((seconds + 3 * _DAY_S) % _WEEK_S) / _WEEK_S
    return np.column_stack(
        [np.sin(day_angle), np.cos(day_angle), np.sin(week_angle), np.cos(week_angle)]
    )


def feature_matrix(
    means: npt.NDArray[np.float64], starts_us: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """The model's input rows: measurements (in FEATURES order) then calendar features."""
    return np.column_stack([means, calendar_features(starts_us)])


def interpolate_gaps(values: npt.NDArray[np.float64], max_gap: int) -> npt.NDArray[np.float64]:
    """Linear interpolation of interior NaN runs of at most ``max_gap`` rows, per column.

    Longer runs, and runs touching either end (nothing to interpolate towards), stay NaN.

    >>> interpolate_gaps(np.array([[1.0], [np.nan], [3.0], [np.nan], [np.nan]]), 1).ravel()
    array([ 1.,  2.,  3., nan, nan])
    """
    out = np.array(values, dtype=np.float64, copy=True)
    if out.ndim == 1:
        return interpolate_gaps(out[:, None], max_gap)[:, 0]
    rows = np.arange(len(out))
    for j in range(out.shape[1]):
        column = out[:, j]
        missing = np.isnan(column)
        if not missing.any() or missing.all() or max_gap < 1:
            continue
        run_id = np.cumsum(np.diff(np.concatenate([[0], missing.astype(np.int8)])) == 1)
        run_id = np.where(missing, run_id, 0)
        lengths = np.bincount(run_id)
        known = ~missing
        fillable = missing & (lengths[run_id] <= max_gap)
        fillable &= rows > np.flatnonzero(known)[0]
        fillable &= rows < np.flatnonzero(known)[-1]
        column[fillable] = np.interp(rows[fillable], rows[known], column[known])
    return out
