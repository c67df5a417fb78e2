"""The components plot's data: a forecast's :class:`Components` as the wire document.

Why data and not a PNG: rendering costs ten times the forecast (0.4-0.5 s of CPU against
~0.04 s), and most forecasts are never looked at. The service writes this document (a
few kB); the gateway renders it with :func:`shared.monthly_plot.render_png` the first
time the plot is requested and caches the PNG.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import numpy.typing as npt

from services.monthly.core.forecast import Components
from shared.monthly_results import MonthlyComponents

__all__ = ["components_document"]


def _dates(values: npt.NDArray[np.datetime64]) -> list[dt.date]:
    return [dt.date.fromisoformat(str(d)) for d in values.astype("datetime64[D]")]


def _floats(values: npt.NDArray[np.floating] | None) -> list[float] | None:
    return None if values is None else [float(v) for v in np.asarray(values, dtype=float)]


def components_document(
    components: Components,
    household_id: str,
    as_of: dt.date,
    *,
    fallback_reason: str | None = None,
) -> MonthlyComponents:
    """The wire document of ``components`` (NaN trend values become None)."""
    trend = np.asarray(components.trend, dtype=float)
    return MonthlyComponents(
        household_id=household_id,
        as_of=as_of,
        title=components.title,
        forecast_from=dt.date.fromisoformat(str(components.forecast_from.astype("datetime64[D]"))),
        trend_dates=_dates(components.trend_dates),
        trend=[float(v) if np.isfinite(v) else None for v in trend],
        observed_dates=_dates(components.observed_dates),
        observed=[float(v) for v in np.asarray(components.observed, dtype=float)],
        weekly=_floats(components.weekly),
        daily=_floats(components.daily),
        yearly=_floats(components.yearly),
        notes=dict(components.notes),
        fallback_reason=fallback_reason,
    )
