"""Anomaly score: how far a completed bin's actual fell outside the interval forecast for it.

Why this score: a prediction interval already says how uncertain the model was for that
household at that hour, so the distance outside it, *in interval widths*, is comparable
across households and hours without any per-household calibration:

* ``0`` when the actual lies inside ``[lower, upper]``;
* ``(actual - upper) / width`` above the interval, ``(lower - actual) / width`` below,
  with ``width = max(upper - lower, min_width_kw)`` so that a near-zero-width interval
  (a house asleep at night) does not turn a few watts into a huge score.

A bin is flagged when its score exceeds ``threshold`` (0 by default: any actual outside
the interval is flagged, which is what "actuals leave the prediction interval" means; with
the 10-90 % quantile interval about one bin in five is flagged on a well-calibrated model,
so consumers wanting fewer alerts raise the threshold or look at the score). A bin with no
actual (missing data) or no forecast covering it scores 0 and is never flagged.

The forecast compared against is the newest one issued *before* the bin completed that
covers it: the previous step's forecast (its first point) when there is one, else the
last forecast kept in the household's window state (e.g. after a gap).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_MIN_WIDTH_KW", "Prior", "interval_score", "score_steps"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Smallest interval width used as the score's unit (50 W).
DEFAULT_MIN_WIDTH_KW: Final = 0.05

#: A household's last forecast before this batch: (first point start µs, (steps, 3) kW).
Prior = tuple[int | None, FloatArray]


def interval_score(
    actual: npt.ArrayLike,
    lower: npt.ArrayLike,
    upper: npt.ArrayLike,
    *,
    min_width_kw: float = DEFAULT_MIN_WIDTH_KW,
) -> FloatArray:
    """Distance outside ``[lower, upper]`` in interval widths (0 inside or when unknown).

    >>> interval_score([1.0, 3.0, 0.0, np.nan], [0.5, 0.5, 0.5, 0.5], [1.5, 1.5, 1.5, 1.5])
    array([0. , 1.5, 0.5, 0. ])
    """
    a, lo, hi = (np.asarray(x, dtype=np.float64) for x in (actual, lower, upper))
    width = np.maximum(hi - lo, min_width_kw)
    with np.errstate(invalid="ignore"):
        outside = np.maximum(np.maximum(a - hi, lo - a), 0.0) / width
    return np.where(np.isnan(outside), 0.0, outside)


def score_steps(
    household: IntArray,
    completed_us: IntArray,
    actuals: FloatArray,
    issued_us: IntArray,
    forecasts: FloatArray,
    has_forecast: npt.NDArray[np.bool_],
    priors: Sequence[Prior],
    resolution_s: int,
    *,
    min_width_kw: float = DEFAULT_MIN_WIDTH_KW,
) -> FloatArray:
    """Score each step's completed bin against the newest earlier forecast covering it.

    Steps are grouped by household and in time order (as
    :func:`services.realtime.core.window.advance` returns them); ``forecasts[i]`` is step
    ``i``'s own forecast ``(steps, 3)`` (lower, value, upper) issued at ``issued_us[i]``,
    meaningful where ``has_forecast[i]``; ``priors[h]`` is household ``h``'s forecast from
    before the batch.
    """
    count = len(household)
    lower = np.full(count, np.nan)
    upper = np.full(count, np.nan)
    res_us = resolution_s * 1_000_000
    index = np.arange(count)
    # The newest earlier step of the same household with a forecast, else -1.
    last = np.maximum.accumulate(np.where(has_forecast, index, -1)) if count else index
    previous = np.concatenate([[-1], last[:-1]]).astype(np.int64) if count else index
    same = previous >= 0
    same[same] = household[previous[same]] == household[same]
    if same.any():
        rows = np.flatnonzero(same)
        source = previous[rows]
        k = (completed_us[rows] - issued_us[source]) // res_us
        ok = (k >= 0) & (k < forecasts.shape[1])
        lower[rows[ok]] = forecasts[source[ok], k[ok], 0]
        upper[rows[ok]] = forecasts[source[ok], k[ok], 2]
    for i in np.flatnonzero(~same):
        start, points = priors[int(household[i])]
        if start is None or len(points) == 0:
            continue
        offset = int(completed_us[i]) - start
        step = offset // res_us
        if offset % res_us == 0 and 0 <= step < len(points):
            lower[i], upper[i] = points[step, 0], points[step, 2]
    return interval_score(actuals, lower, upper, min_width_kw=min_width_kw)
