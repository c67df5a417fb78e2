"""The components plot of a monthly forecast as PNG: trend, then each fitted seasonality.

Why here: the monthly service no longer renders (0.4-0.5 s of CPU per forecast, ten times
the forecast itself); it writes the plot's numbers (:class:`MonthlyComponents`) and the
gateway renders the PNG the first time somebody asks for it, then caches it. Both need
the same drawing, and services never import each other.

Only panels with something to show are drawn: the trend (with the observed days), then
weekly, daily and yearly in that order where fitted. What was not fitted, and why, is
said in one line under the figure, not as empty panels; the fallback's figure says
plainly that it is the fallback. A :class:`matplotlib.figure.Figure` on the Agg canvas,
no pyplot global state (safe in threads), no timestamp in the metadata: the same
components always give the same bytes.
"""

from __future__ import annotations

import io
from typing import Final

import matplotlib.dates as mdates
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from shared.monthly_results import MonthlyComponents

__all__ = ["PANELS", "PNG_MAGIC", "components_figure", "drawn_panels", "render_png"]

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
_PANEL_HEIGHT: Final = 2.25


def drawn_panels(components: MonthlyComponents) -> tuple[str, ...]:
    """The panels the figure has: the trend always, each seasonality only if fitted."""
    fitted = {
        "weekly": components.weekly,
        "daily": components.daily,
        "yearly": components.yearly,
    }
    return ("trend", *(name for name in PANELS[1:] if fitted[name]))


def _trend(ax: Axes, c: MonthlyComponents) -> None:
    ax.set_title("trend (kWh/day)" if c.fallback_reason is None else "daily kWh", fontsize=10)
    if c.observed:
        ax.plot(
            np.array(c.observed_dates, dtype="datetime64[D]"),
            c.observed,
            ".",
            ms=2,
            color="0.6",
            label="observed",
        )
    trend = np.array([np.nan if v is None else v for v in c.trend], dtype=float)
    if np.isfinite(trend).any():
        label = "trend" if c.fallback_reason is None else "fallback forecast"
        ax.plot(
            np.array(c.trend_dates, dtype="datetime64[D]"), trend, color="tab:blue", label=label
        )
    ax.axvline(float(mdates.date2num(c.forecast_from)), color="tab:red", lw=0.8)
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if "model" in c.notes:
        ax.text(0.01, 0.95, c.notes["model"], transform=ax.transAxes, va="top", fontsize=8)
    if ax.lines[:-1]:
        ax.legend(loc="upper right", fontsize=8)


def _seasonality(ax: Axes, name: str, values: list[float]) -> None:
    if name == "weekly":
        ax.set_title("weekly (kWh/day)", fontsize=10)
        ax.plot(range(7), values, marker="o", color="tab:blue")
        ax.set_xticks(range(7), _WEEKDAYS)
    elif name == "daily":
        ax.set_title("daily (kW, hour of day UTC)", fontsize=10)
        ax.plot(range(len(values)), values, color="tab:blue")
        ax.set_xticks(range(0, 24, 3))
    else:
        ax.set_title("yearly (kWh/day)", fontsize=10)
        ax.plot(range(1, len(values) + 1), values, color="tab:blue")
        ax.set_xticks([s + 1 for s in _MONTH_STARTS], _MONTHS)
    ax.axhline(0, color="0.8", lw=0.8)


def components_figure(components: MonthlyComponents) -> Figure:
    """One axis per drawn panel (:func:`drawn_panels`), in that order."""
    panels = drawn_panels(components)
    figure = Figure(figsize=(8, 0.6 + _PANEL_HEIGHT * len(panels)), dpi=80, layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    title = components.title
    if components.fallback_reason is not None:
        title = f"{components.household_id}, as of {components.as_of}: FALLBACK, not Prophet"
    if title:
        figure.suptitle(title, fontsize=11)
    values = {"weekly": components.weekly, "daily": components.daily, "yearly": components.yearly}
    for ax, name in zip(axes, panels, strict=True):
        if name == "trend":
            _trend(ax, components)
        else:
            _seasonality(ax, name, values[name] or [])
    missing = [
        f"{name}: {components.notes.get(name, 'not fitted')}"
        for name in PANELS[1:]
        if name not in panels
    ]
    if missing and components.fallback_reason is None:
        figure.supxlabel("; ".join(missing), fontsize=8, color="0.35", wrap=True)
    return figure


def render_png(components: MonthlyComponents) -> bytes:
    """The components plot as PNG bytes (deterministic for the same components)."""
    figure = components_figure(components)
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
