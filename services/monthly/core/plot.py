"""The components plot of a monthly forecast: trend, weekly, daily and yearly panels as PNG.

Why our own figure instead of ``Prophet.plot_components``: that one needs a ``predict``
frame with uncertainty (tens of ms), draws only the components the model has (no panel
saying *why* daily or yearly is absent), and goes through pyplot's global state, which is
not safe in a Lambda handling several households in threads. This builds a
:class:`matplotlib.figure.Figure` directly on the Agg canvas: always four panels, in a
fixed order, with a note where a component was not fitted (e.g. "no sub-daily data").

The PNG bytes depend only on the components and matplotlib's version (no timestamp in
the metadata), so a recomputed forecast rewrites the same plot.
"""

from __future__ import annotations

import io
from typing import Final

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from services.monthly.core.forecast import Components

__all__ = ["PANELS", "PNG_MAGIC", "components_figure", "render_png"]

PANELS: Final = ("trend", "weekly", "daily", "yearly")
PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
_WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_STARTS: Final = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


def _note(ax: Axes, text: str) -> None:
    """Say in the panel why it is empty."""
    ax.text(
        0.5,
        0.5,
        text,
        ha="center",
        va="center",
        wrap=True,
        fontsize=9,
        transform=ax.transAxes,
        color="0.35",
    )
    ax.set_xticks([])
    ax.set_yticks([])


def components_figure(components: Components) -> Figure:
    """A four-panel figure (trend, weekly, daily, yearly), one axis per panel."""
    figure = Figure(figsize=(8, 9), dpi=80, layout="constrained")
    axes = figure.subplots(4, 1)
    trend_ax, weekly_ax, daily_ax, yearly_ax = axes
    if components.title:
        figure.suptitle(components.title, fontsize=11)

    trend_ax.set_title("trend (kWh/day)", fontsize=10)
    dates = components.trend_dates.astype("datetime64[D]")
    if len(components.observed):
        trend_ax.plot(
            components.observed_dates.astype("datetime64[D]"),
            components.observed,
            ".",
            ms=2,
            color="0.6",
            label="observed",
        )
    if np.isfinite(components.trend).any():
        trend_ax.plot(dates, components.trend, color="tab:blue", label="trend")
    trend_ax.axvline(components.forecast_from.astype("datetime64[D]"), color="tab:red", lw=0.8)
    if "model" in components.notes:
        trend_ax.text(
            0.01,
            0.95,
            components.notes["model"],
            transform=trend_ax.transAxes,
            va="top",
            fontsize=8,
            color="0.35",
        )
    trend_ax.legend(loc="upper right", fontsize=8)

    weekly_ax.set_title("weekly (kWh/day)", fontsize=10)
    if components.weekly is not None:
        weekly_ax.plot(range(7), components.weekly, marker="o", color="tab:blue")
        weekly_ax.set_xticks(range(7), _WEEKDAYS)
        weekly_ax.axhline(0, color="0.8", lw=0.8)
    else:
        _note(weekly_ax, components.notes.get("weekly", "not fitted"))

    daily_ax.set_title("daily (kW, hour of day UTC)", fontsize=10)
    if components.daily is not None:
        daily_ax.plot(range(len(components.daily)), components.daily, color="tab:blue")
        daily_ax.set_xticks(range(0, 24, 3))
        daily_ax.axhline(0, color="0.8", lw=0.8)
    else:
        _note(daily_ax, components.notes.get("daily", "not fitted"))

    yearly_ax.set_title("yearly (kWh/day)", fontsize=10)
    if components.yearly is not None:
        yearly_ax.plot(range(1, len(components.yearly) + 1), components.yearly, color="tab:blue")
        yearly_ax.set_xticks([s + 1 for s in _MONTH_STARTS], _MONTHS)
        yearly_ax.axhline(0, color="0.8", lw=0.8)
    else:
        _note(yearly_ax, components.notes.get("yearly", "not fitted"))
    return figure


def render_png(components: Components) -> bytes:
    """The components plot as PNG bytes (deterministic for the same components)."""
    figure = components_figure(components)
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
