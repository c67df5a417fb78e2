"""Inputs of the global (fleet) model for energy-only meters, for training and serving.

Why one module: the model is trained on windows cut from the London half-hourly file and
served on windows built by the streaming window state; both go through
:func:`fleet_features`, so the network sees the same numbers in both. TensorFlow-free
and pandas-free (the Lambda imports it).

A window is a household's last 7 days on the model's native 30-minute grid, in kW (NaN =
missing), plus the time at which the forecast starts. Everything is normalised by the
household's own level (mean of its known bins, at least :data:`MIN_LEVEL_KW`), so one
network serves a 0.1 kW flat and a 2 kW house. Features:

* the normalised history (missing bins imputed by the same-slot median, plus the
  fraction of known days);
* per horizon slot (the next 48 half-hours), statistics of the same slot on the previous
  7 days: median (also with the neighbouring slots), mean, min, max, yesterday, a week
  ago (the rules a forecaster would start from; the network predicts a correction to
  the neighbour median, which alone beats the 7-day median by ~2 % MASE on London);
* calendar: time of day (sine/cosine), weekday of today and tomorrow (one-hot), UK bank
  holiday today and tomorrow, recent level changes.

Cold start: a window needs :data:`MIN_KNOWN_BINS` known bins (one day) and nothing more;
training masks the oldest days at random, so a household with one day of data gets a
forecast from the same network.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from shared.holidays import bank_holidays

__all__ = [
    "DAY_BINS",
    "FLEET_RESOLUTION_S",
    "HISTORY_DAYS",
    "INPUT_BINS",
    "MIN_KNOWN_BINS",
    "MIN_LEVEL_KW",
    "SLOT_STATS",
    "FleetInputs",
    "england_bank_holidays",
    "feature_count",
    "fleet_features",
    "nan_median_days",
]

FloatArray = npt.NDArray[np.float64]
FLEET_RESOLUTION_S: Final = 1800
DAY_BINS: Final = 48
HISTORY_DAYS: Final = 7
INPUT_BINS: Final = HISTORY_DAYS * DAY_BINS
#: A window with fewer known bins (one day) is not forecast by the model.
MIN_KNOWN_BINS: Final = DAY_BINS
#: Floor of the household level (kW): an empty flat must not blow up the normalisation.
MIN_LEVEL_KW: Final = 0.02
_EPOCH_DAY: Final = dt.date(1970, 1, 1)
#: Statistics per horizon slot in the feature vector (after the 336-bin history).
SLOT_STATS: Final = 7
_SCALARS: Final = 4
_CALENDAR: Final = 2 + 14 + 2


def feature_count() -> int:
    """Width of the flat feature vector of one window."""
    return INPUT_BINS + SLOT_STATS * DAY_BINS + _SCALARS + _CALENDAR


@dataclass(frozen=True, eq=False)
class FleetInputs:
    """Features of a set of windows, with what turns the network's output back into kW.

    ``x`` ``(n, feature_count())`` float32; ``level`` ``(n,)`` kW; ``base`` ``(n, 48)``
    the normalised median of the slot and its neighbours over 7 days (the network
    predicts a correction to it);
    ``ok`` whether the window has enough data (:data:`MIN_KNOWN_BINS`);
    ``spread`` ``(n,)`` the household's own day-to-day noise: mean absolute deviation of
    its known bins from their slot's 7-day median, in units of its level (scales the
    interval per household, :class:`~services.realtime.model.fleet_model.FleetSpec`).
    """

    x: npt.NDArray[np.float32]
    level: FloatArray
    base: FloatArray
    ok: npt.NDArray[np.bool_]
    spread: FloatArray


def nan_median_days(days: FloatArray) -> FloatArray:
    """Median over axis 1 ignoring NaN (NaN where all are missing), sort-based.

    ``np.nanmedian`` costs ~10x more on small axes; this is on the serving path.

    >>> nan_median_days(np.array([[[1.0], [np.nan], [3.0], [2.0]]])).tolist()
    [[2.0]]
    """
    ordered = np.sort(days, axis=1)  # NaN last
    known = (~np.isnan(days)).sum(axis=1)
    lo = np.maximum(known - 1, 0) // 2
    hi = np.minimum(known // 2, days.shape[1] - 1)
    a = np.take_along_axis(ordered, lo[:, None, :], axis=1)[:, 0]
    b = np.take_along_axis(ordered, hi[:, None, :], axis=1)[:, 0]
    median = np.where(known % 2 == 1, a, 0.5 * (a + b))
    return np.where(known > 0, median, np.nan)


def fleet_features(
    history_kw: npt.ArrayLike,
    issue_s: npt.ArrayLike,
    holidays: frozenset[int] = frozenset(),
) -> FleetInputs:
    """Windows ``(n, 336)`` kW (NaN = missing) starting the forecast at ``issue_s`` (UTC
    seconds, ``(n,)``) -> :class:`FleetInputs`. ``holidays``: epoch day numbers.

    >>> hist = np.tile(np.r_[np.full(16, 0.2), np.full(32, 1.0)], 7)
    >>> inputs = fleet_features(hist[None], np.array([1_700_000_000 // 86400 * 86400]))
    >>> inputs.ok.tolist(), inputs.x.shape == (1, feature_count())
    ([True], True)
    """
    h = np.asarray(history_kw, dtype=np.float64)
    if h.ndim != 2 or h.shape[1] != INPUT_BINS:
        raise ValueError(f"history must be (n, {INPUT_BINS}) kW, got {h.shape}")
    issue = np.asarray(issue_s, dtype=np.float64).reshape(-1)
    n = len(h)
    known = ~np.isnan(h)
    count = known.sum(axis=1)
    ok = count >= MIN_KNOWN_BINS
    with np.errstate(invalid="ignore"):
        level = np.where(count > 0, np.nansum(h, axis=1) / np.maximum(count, 1), 0.0)
    level = np.maximum(level, MIN_LEVEL_KW)
    norm = h / level[:, None]
    days = norm.reshape(n, HISTORY_DAYS, DAY_BINS)
    median = nan_median_days(days)
    # The same slot and its two neighbours on each of the 7 days: a steadier median (a
    # better MAE rule than the 7-day median alone), the anchor the network corrects.
    padded = np.concatenate([np.full((n, 1), np.nan), norm, np.full((n, 1), np.nan)], axis=1)
    neighbours = np.concatenate(
        [padded[:, k : k + INPUT_BINS].reshape(n, HISTORY_DAYS, DAY_BINS) for k in range(3)],
        axis=1,
    )
    smooth = nan_median_days(neighbours)
    known_days = (~np.isnan(days)).sum(axis=1)
    with np.errstate(invalid="ignore"):
        mean = np.nansum(days, axis=1) / np.maximum(known_days, 1)
    mean = np.where(known_days > 0, mean, np.nan)
    fill = np.where(np.isnan(median), 1.0, median)  # a slot never seen: the level
    anchor = np.where(np.isnan(smooth), fill, smooth)
    lo = np.fmin.reduce(days, axis=1)
    hi = np.fmax.reduce(days, axis=1)
    yesterday, last_week = days[:, -1], days[:, 0]
    stats = [
        anchor,
        fill,
        np.where(np.isnan(mean), fill, mean),
        np.where(np.isnan(lo), fill, lo),
        np.where(np.isnan(hi), fill, hi),
        np.where(np.isnan(yesterday), fill, yesterday),
        np.where(np.isnan(last_week), fill, last_week),
    ]
    imputed = np.where(known, norm, np.tile(fill, HISTORY_DAYS))
    recent = imputed[:, -4:].mean(axis=1)
    last_day = imputed[:, -DAY_BINS:].mean(axis=1)
    scalars = np.column_stack([count / INPUT_BINS, recent, last_day, np.log(level)])
    day = np.floor(issue / 86_400).astype(np.int64)
    frac = (issue - day * 86_400) / 86_400
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    today = np.eye(7)[weekday]
    tomorrow = np.eye(7)[(weekday + 1) % 7]
    # a batch spans a few days: look each distinct one up once
    distinct, where = np.unique(day, return_inverse=True)
    flags = np.array([[d in holidays, d + 1 in holidays] for d in distinct.tolist()], float)
    hol_today, hol_tomorrow = flags.reshape(-1, 2)[where.reshape(-1)].T
    calendar = np.column_stack(
        [
            np.sin(2 * np.pi * frac),
            np.cos(2 * np.pi * frac),
            today,
            tomorrow,
            hol_today,
            hol_tomorrow,
        ]
    )
    x = np.concatenate([imputed, *stats, scalars, calendar], axis=1).astype(np.float32)
    deviation = np.abs(days - fill[:, None, :])
    with np.errstate(invalid="ignore"):
        spread = np.nansum(deviation, axis=(1, 2)) / np.maximum(count, 1)
    spread = np.where(count > 0, spread, np.nan)
    return FleetInputs(x=x, level=level, base=anchor, ok=ok, spread=spread)


# ------------------------------------------------------------------------ bank holidays


def england_bank_holidays(years: Iterable[int]) -> frozenset[int]:
    """Bank holidays of England and Wales (epoch day numbers) of ``years``, by the
    statutory rules and the known one-offs (:mod:`shared.holidays`). For serving any
    year; training also reads the London package's list (``fleet_data.load_bank_holidays``).
    """
    return frozenset((d - _EPOCH_DAY).days for year in years for d in bank_holidays(year))
