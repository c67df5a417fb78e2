"""Univariate fallback for meters the multivariate model cannot read.

Why: the LSTM needs all seven UCI measurements; a London smart meter reports only the
energy of each half hour (``energy_kwh`` + ``interval_s``), and a meter may stop sending
voltage or sub-metering. Those households still get a forecast, marked as such in
``Forecast.fallback_reason`` and ``model_version``.

The method is seasonal naive with empirical residual quantiles (the textbook benchmark
for load series with a daily cycle): the forecast for ``t + k`` is the value one day
earlier, and its quantiles add the quantiles of the household's own day-over-day
residuals over the kept history (7 days by default). It needs one complete day for the
forecast and at least one day of residuals, so a new household gets its first fallback
forecast after two days. Its resolution is the model's, or the meter's interval when
that is coarser (half-hourly meters are forecast per half hour, not per quarter hour);
its horizon covers the model's horizon in time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from shared.batch import ReadingBatch

__all__ = [
    "FALLBACK_VERSION",
    "SeasonalNaive",
    "fallback_reason",
    "missing_reason",
    "power_kw",
    "reading_interval_s",
    "target_power_kw",
]

FloatArray = npt.NDArray[np.float64]

FALLBACK_VERSION: Final = "fallback-seasonal-naive-1"
_DAY_S: Final = 86_400


@dataclass(frozen=True)
class SeasonalNaive:
    """Seasonal naive (one day) with residual quantiles, on windows of the target alone."""

    resolution_s: int
    horizon_steps: int
    quantiles: tuple[float, ...]
    history_days: int = 7
    season_s: int = _DAY_S
    version: str = FALLBACK_VERSION

    def __post_init__(self) -> None:
        if self.season_s % self.resolution_s:
            raise ValueError(f"resolution {self.resolution_s} s must divide the season")
        if self.history_days < 2:
            raise ValueError("history_days must be >= 2 (one day to copy, one of residuals)")

    @classmethod
    def for_meter(
        cls,
        model_resolution_s: int,
        model_horizon_steps: int,
        quantiles: Sequence[float],
        interval_s: int,
        *,
        history_days: int = 7,
    ) -> SeasonalNaive:
        """The model's resolution, or the smallest multiple of it dividing a day that is
        at least the meter's interval; the horizon covers the model's in time."""
        resolution = model_resolution_s
        while resolution < interval_s or _DAY_S % resolution:
            resolution += model_resolution_s
            if resolution > _DAY_S:
                raise ValueError(f"no bin size for a {interval_s} s meter interval")
        horizon = math.ceil(model_horizon_steps * model_resolution_s / resolution)
        return cls(resolution, horizon, tuple(quantiles), history_days=history_days)

    @property
    def season_steps(self) -> int:
        return self.season_s // self.resolution_s

    @property
    def input_steps(self) -> int:
        return self.history_days * self.season_steps

    def predict(self, windows: FloatArray) -> tuple[FloatArray, list[str | None]]:
        """``(count, input_steps)`` kW -> ``(count, horizon_steps, quantiles)`` kW, reasons.

        A window without its last complete day, or with fewer than a day of residuals,
        gets NaN and the reason; the others get ``None``.

        >>> model = SeasonalNaive(43_200, 2, (0.1, 0.5, 0.9), history_days=2)  # 2 bins/day
        >>> values, why = model.predict(np.array([[1.0, 2.0, 1.5, 2.5]]))
        >>> values[0, :, 1].tolist(), why
        ([2.0, 3.0], [None])
        """
        windows = np.asarray(windows, dtype=np.float64)
        season = self.season_steps
        count = len(windows)
        last_day = windows[:, -season:]
        base = last_day[:, np.arange(self.horizon_steps) % season]
        residuals = windows[:, season:] - windows[:, :-season]
        known = (~np.isnan(residuals)).sum(axis=1)
        day_complete = np.asarray(~np.isnan(last_day).any(axis=1), dtype=bool)
        ok = day_complete & (known >= season)
        values = np.full((count, self.horizon_steps, len(self.quantiles)), np.nan)
        if ok.any():
            spread = np.nanquantile(residuals[ok], self.quantiles, axis=1).T  # (ok, q)
            values[ok] = base[ok][:, :, None] + spread[:, None, :]
        reasons: list[str | None] = []
        for complete, residual_count, good in zip(
            day_complete.tolist(), known.tolist(), ok.tolist(), strict=True
        ):
            if good:
                reasons.append(None)
            elif not complete:
                reasons.append("fallback needs the last complete day (missing bins in it)")
            else:
                reasons.append(
                    f"fallback warming up: {int(residual_count)} of {season} day-over-day "
                    "residuals (needs two days of data)"
                )
        return values, reasons


def fallback_reason(batches: Sequence[ReadingBatch], required: Sequence[str]) -> str | None:
    """Why these readings cannot feed the multivariate model, or ``None`` if they can.

    >>> import numpy as np
    >>> b = ReadingBatch("MAC000002", np.array([0]),
    ...                  {"energy_kwh": np.array([0.2]), "interval_s": np.array([1800.0])})
    >>> fallback_reason([b], ["global_active_power_kw", "voltage_v"])
    'univariate fallback: the meter does not report global_active_power_kw, voltage_v'
    """
    missing = [
        name for name in required if all(np.isnan(batch.columns[name]).all() for batch in batches)
    ]
    return missing_reason(missing) if missing else None


def missing_reason(missing: Sequence[str]) -> str:
    """The ``fallback_reason`` of a meter that does not send ``missing``."""
    return f"univariate fallback: the meter does not report {', '.join(missing)}"


def power_kw(power: FloatArray, energy_kwh: FloatArray, interval_s: FloatArray) -> FloatArray:
    """Active power per reading: measured, else the interval's energy as average power."""
    with np.errstate(invalid="ignore", divide="ignore"):
        derived = energy_kwh * 3600.0 / interval_s
    return np.where(np.isnan(power), derived, power)


def target_power_kw(batch: ReadingBatch) -> FloatArray:
    """:func:`power_kw` of a batch."""
    c = batch.columns
    return power_kw(c["global_active_power_kw"], c["energy_kwh"], c["interval_s"])


def reading_interval_s(batches: Sequence[ReadingBatch], default: int = 60) -> int:
    """The meter's reading interval: the median ``interval_s`` sent, else ``default``."""
    if not batches:
        return default
    values = np.concatenate([b.columns["interval_s"] for b in batches])
    values = values[~np.isnan(values)]
    return round(float(np.median(values))) if len(values) else default
