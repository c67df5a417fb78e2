"""Forecasts for energy-only meters: the global (fleet) model, seasonal naive last.

Why here and not in the window state: an energy-only meter keeps its univariate window
(7 days of average power at the meter's bin size, :mod:`.fallback`), whatever model
serves it; this module maps those windows onto the fleet model's native grid (30 min),
calls the model ONCE for every such window of the batch (the ``ForecastModel`` port),
and maps the answer back to the meter's bins:

* a finer window (15-min bins: minute and quarter-hour meters) is averaged in pairs on
  the way in, and each half-hour quantile is repeated for its quarter hours on the way
  out (the model has no finer shape to give);
* a coarser one (hourly meters) is repeated per half hour on the way in, and pairs of
  half hours are averaged on the way out;
* the horizon is one day at the meter's bins (96, 48 or 24 steps).

A window the model does not serve (less than one known day: see
:data:`~services.realtime.model.fleet_features.MIN_KNOWN_BINS`, or a bin size that does
not fit the grid) goes to seasonal naive, the last resort, marked in its
``fallback_reason``; one that neither can serve is skipped with both reasons. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from services.realtime.core.fallback import SeasonalNaive
from services.realtime.ports import ForecastModel

__all__ = ["LAST_RESORT", "EnergyForecast", "energy_forecast", "to_model_grid"]

FloatArray = npt.NDArray[np.float64]
LAST_RESORT: Final = "seasonal naive (last resort)"
_DAY_S: Final = 86_400


@dataclass(frozen=True, eq=False)
class EnergyForecast:
    """Quantiles ``(count, horizon, q)`` kW at the window's bins; ``valid`` rows got a
    forecast; ``skip_reasons[i]`` says why row ``i`` did not; ``versions`` and
    ``fallback_reasons`` are per row (the model's, or the last resort's)."""

    quantiles: FloatArray
    valid: npt.NDArray[np.bool_]
    skip_reasons: list[str | None]
    versions: list[str]
    fallback_reasons: list[str | None]
    horizon_steps: int


def to_model_grid(
    windows_kw: FloatArray, resolution_s: int, model_resolution_s: int, model_steps: int
) -> tuple[FloatArray, int] | None:
    """Windows at ``resolution_s`` -> ``(count, model_steps)`` at the model's bins (NaN
    where unknown, older bins missing -> NaN) and the factor between the two grids
    (positive: window bins per model bin; negative: model bins per window bin); ``None``
    when neither divides the other.

    >>> to_model_grid(np.array([[1.0, 3.0, 2.0, 2.0]]), 900, 1800, 3)[0].tolist()
    [[nan, 2.0, 2.0]]
    """
    count = len(windows_kw)
    if model_resolution_s % resolution_s == 0:
        f = model_resolution_s // resolution_s
        need = model_steps * f
        w = windows_kw[:, -need:]
        if w.shape[1] < need:
            w = np.concatenate([np.full((count, need - w.shape[1]), np.nan), w], axis=1)
        return w.reshape(count, model_steps, f).mean(axis=2), f
    if resolution_s % model_resolution_s == 0:
        f = resolution_s // model_resolution_s
        need = -(-model_steps // f)
        w = windows_kw[:, -need:]
        if w.shape[1] < need:
            w = np.concatenate([np.full((count, need - w.shape[1]), np.nan), w], axis=1)
        return np.repeat(w, f, axis=1)[:, -model_steps:], -f
    return None


def _from_model_grid(quantiles: FloatArray, factor: int, horizon: int) -> FloatArray:
    if factor > 0:
        return np.repeat(quantiles, factor, axis=1)[:, :horizon]
    f = -factor
    usable = (quantiles.shape[1] // f) * f
    count, _, q = quantiles.shape
    return quantiles[:, :usable].reshape(count, usable // f, f, q).mean(axis=2)[:, :horizon]


def energy_forecast(
    model: ForecastModel,
    windows_kw: FloatArray,
    step_bins: npt.NDArray[np.int64],
    end_known: npt.NDArray[np.bool_],
    resolution_s: int,
    *,
    history_days: int = 7,
) -> EnergyForecast:
    """Forecast univariate windows ``(count, steps)`` kW whose forecasts start at bins
    ``step_bins`` (of ``resolution_s``): the model first, seasonal naive for the rest."""
    spec = model.spec
    count = len(windows_kw)
    horizon = max(1, _DAY_S // resolution_s)
    q = len(spec.quantiles)
    out = np.full((count, horizon, q), np.nan)
    served = np.zeros(count, dtype=bool)
    model_why: list[str] = ["" for _ in range(count)]
    mapped = to_model_grid(windows_kw, resolution_s, spec.resolution_s, spec.input_steps)
    if mapped is None:
        model_why = [f"the model's {spec.resolution_s} s bins do not fit {resolution_s} s"] * count
    elif count:
        grid, factor = mapped
        issue_s = step_bins.astype(np.float64) * resolution_s
        starts = issue_s[:, None] - spec.resolution_s * np.arange(spec.input_steps, 0, -1)
        predicted = model.predict(np.stack([grid, starts], axis=-1))
        served = np.asarray(np.isfinite(predicted).all(axis=(1, 2)), dtype=bool)
        if served.any():
            out[served] = _from_model_grid(predicted[served], factor, horizon)
        known = (~np.isnan(grid)).sum(axis=1)
        for i in np.flatnonzero(~served).tolist():
            model_why[i] = (
                f"model warming up: {int(known[i])} known bins of {spec.resolution_s} s "
                "(needs one day)"
            )
    versions = [spec.version] * count
    fallback_reasons: list[str | None] = [None] * count
    skip: list[str | None] = [None] * count
    rest = np.flatnonzero(~served)
    if len(rest):
        naive = SeasonalNaive(resolution_s, horizon, tuple(spec.quantiles), history_days)
        values, reasons = naive.predict(windows_kw[rest])
        for j, i in enumerate(rest.tolist()):
            why = reasons[j]
            if why is None and not end_known[i]:
                why = "fallback needs the last bin before the step (missing)"
            if why is None:
                out[i] = values[j]
                served[i] = True
                versions[i] = naive.version
                fallback_reasons[i] = f"{LAST_RESORT}: {model_why[i]}; {naive.version}"
            else:
                skip[i] = f"{model_why[i]}; {why}"
    return EnergyForecast(out, served, skip, versions, fallback_reasons, horizon)


def rows_of(values: Sequence[str | None], keep: npt.NDArray[np.bool_]) -> tuple[str | None, ...]:
    """The per-step values of the kept steps (for :class:`ForecastRows`)."""
    return tuple(values[i] for i in np.flatnonzero(keep).tolist())
