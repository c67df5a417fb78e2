"""Pure builders of the dashboard's tables and charts from API answers (no Streamlit here).

Kept apart from the Streamlit script so the shaping of the data (actuals vs forecast with
its interval, past forecasts against what happened, the rolling accuracy, anomaly marks,
the month view and its cost) is tested without a browser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import altair as alt
import pandas as pd

__all__ = [
    "SERIES_COLORS",
    "MonthSummary",
    "accuracy_frame",
    "accuracy_rows",
    "fallback_notice",
    "history_frame",
    "live_chart",
    "live_frames",
    "month_chart",
    "month_frame",
    "month_summary",
]


SERIES_COLORS: dict[str, str] = {
    "actual": "#1f77b4",
    "forecast": "#ff7f0e",
    "forecast interval": "#ffbb78",
    "past forecasts (next interval)": "#2ca02c",
    "past forecasts' interval": "#98df8a",
}
"""One legend for the live chart: every series and band is named in it."""
_PAST = "past forecasts (next interval)"
_PAST_BAND = "past forecasts' interval"


def history_frame(history: Mapping[str, Any] | None) -> pd.DataFrame:
    """Past forecasts (time, kW, lower, upper) with their actual and whether it was inside."""
    points = (history or {}).get("points", [])
    return pd.DataFrame(
        {
            "time": pd.to_datetime([p["start"] for p in points], utc=True),
            "end": pd.to_datetime([p["end"] for p in points], utc=True),
            "kw": [p["value_kw"] for p in points],
            "lower": [p["lower_kw"] for p in points],
            "upper": [p["upper_kw"] for p in points],
            "actual": [p["actual_kw"] for p in points],
            "inside": [p["inside_interval"] for p in points],
            "series": _PAST,
            "band": _PAST_BAND,
        }
    )


def accuracy_rows(accuracy: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One row per horizon with scored intervals: MAE, MASE and the band's coverage."""
    names = {"next": "next interval", "day_ahead": "day ahead"}
    rows = []
    for horizon, m in ((accuracy or {}).get("horizons") or {}).items():
        if not m["pairs"]:
            continue
        rows.append(
            {
                "horizon": names.get(horizon, horizon),
                "intervals scored": m["pairs"],
                "MAE (kW)": _rounded(m["mae_kw"], 3),
                "MASE vs same as yesterday": _rounded(m["mase"], 2),
                "inside the interval": _rounded(m["coverage"], 3),
                "bias (kW)": _rounded(m["bias_kw"], 3),
            }
        )
    return rows


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def live_frames(
    consumption: Mapping[str, Any] | None,
    forecast: Mapping[str, Any] | None,
    anomalies: Sequence[Mapping[str, Any]],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Actuals (time, kW), the forecast (time, kW, lower, upper) and anomaly times."""
    points = (consumption or {}).get("points", [])
    actual = pd.DataFrame(
        {
            "time": pd.to_datetime([p["start"] for p in points], utc=True),
            "kw": [p["mean_kw"] for p in points],
            "series": "actual",
        }
    )
    steps = (forecast or {}).get("forecast", {}).get("points", [])
    predicted = pd.DataFrame(
        {
            "time": pd.to_datetime([p["timestamp"] for p in steps], utc=True),
            "kw": [p["value_kw"] for p in steps],
            "lower": [p["lower_kw"] for p in steps],
            "upper": [p["upper_kw"] for p in steps],
            "series": "forecast",
        }
    )
    marks = pd.DataFrame(
        {
            "time": pd.to_datetime([a["timestamp"] for a in anomalies], utc=True),
            "score": [a["score"] for a in anomalies],
        }
    )
    return actual, predicted, marks


def live_chart(
    actual: pd.DataFrame,
    predicted: pd.DataFrame,
    marks: pd.DataFrame,
    past: pd.DataFrame | None = None,
) -> alt.LayerChart:
    """Actual kW, past forecasts (a step per interval) with their band, the latest
    forecast with its band, anomalies as red rules; the legend names every series/band."""
    x = alt.X("time:T", title=None)
    scale = alt.Scale(domain=list(SERIES_COLORS), range=list(SERIES_COLORS.values()))
    color = alt.Color("series:N", scale=scale, title=None, legend=alt.Legend(labelLimit=260))
    layers: list[Any] = []
    if past is not None and not past.empty:
        layers.append(
            alt.Chart(past)
            .mark_area(opacity=0.45, interpolate="step-after")
            .encode(
                x=x,
                y="lower:Q",
                y2="upper:Q",
                color=alt.Color("band:N", scale=scale, title=None),
                tooltip=["time:T", "lower:Q", "upper:Q", "actual:Q"],
            )
        )
    if not predicted.empty:
        band = predicted.assign(band="forecast interval")
        layers.append(
            alt.Chart(band)
            .mark_area(opacity=0.45)
            .encode(x=x, y="lower:Q", y2="upper:Q", color=alt.Color("band:N", scale=scale))
        )
    layers.append(
        alt.Chart(actual)
        .mark_line(strokeWidth=1)
        .encode(x=x, y=alt.Y("kw:Q", title="kW"), color=color)
    )
    if past is not None and not past.empty:
        layers.append(
            alt.Chart(past)
            .mark_line(interpolate="step-after", strokeWidth=2)
            .encode(x=x, y="kw:Q", color=color, tooltip=["time:T", "kw:Q", "actual:Q"])
        )
    if not predicted.empty:
        layers.append(alt.Chart(predicted).mark_line(point=True).encode(x=x, y="kw:Q", color=color))
    if not marks.empty:
        layers.append(
            alt.Chart(marks)
            .mark_rule(color="red", strokeDash=[4, 2])
            .encode(x=x, tooltip=["time:T", "score:Q"])
        )
    return alt.LayerChart(layer=layers, height=320)


@dataclass(frozen=True)
class MonthSummary:
    """The month's energy and cost: to date, rest, total, and the 80 %/95 % intervals."""

    actual_kwh: float
    rest_kwh: float
    total_kwh: float
    total_80: tuple[float, float]
    total_95: tuple[float, float]
    tariff: float

    def cost(self, kwh: float) -> float:
        return kwh * self.tariff


def month_summary(monthly: Mapping[str, Any], tariff: float) -> MonthSummary:
    f = monthly["forecast"]
    return MonthSummary(
        actual_kwh=f["actual_to_date_kwh"],
        rest_kwh=f["rest_of_month_kwh"],
        total_kwh=f["month_total_kwh"],
        total_80=(f["month_total_lower_80"], f["month_total_upper_80"]),
        total_95=(f["month_total_lower_95"], f["month_total_upper_95"]),
        tariff=tariff,
    )


def month_frame(monthly: Mapping[str, Any], tariff: float) -> pd.DataFrame:
    """One row per day: kWh, its intervals, actual or forecast, and its cost."""
    daily = monthly["forecast"]["daily"]
    frame = pd.DataFrame(daily)
    if frame.empty:
        return frame
    frame["date"] = pd.to_datetime(frame["date"])
    frame["kind"] = frame["is_actual"].map({True: "actual", False: "forecast"})
    frame["cost"] = frame["kwh"] * tariff
    return frame


def month_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """Daily kWh: actual bars, forecast bars with 80 % and 95 % interval whiskers."""
    x = alt.X("date:T", title=None)
    colors = alt.Scale(domain=["actual", "forecast"], range=["#1f77b4", "#ff7f0e"])
    bars = (
        alt.Chart(frame)
        .mark_bar(opacity=0.8)
        .encode(
            x=x,
            y=alt.Y("kwh:Q", title="kWh per day"),
            color=alt.Color("kind:N", scale=colors),
            tooltip=["date:T", "kwh:Q", "cost:Q", "kind:N"],
        )
    )
    forecast = frame[~frame["is_actual"]] if not frame.empty else frame
    band95 = (
        alt.Chart(forecast).mark_rule(color="#999").encode(x=x, y="lower_95:Q", y2="upper_95:Q")
    )
    band80 = (
        alt.Chart(forecast)
        .mark_rule(color="#333", strokeWidth=3)
        .encode(x=x, y="lower_80:Q", y2="upper_80:Q")
    )
    return alt.LayerChart(layer=[bars, band95, band80], height=280)


def fallback_notice(monthly: Mapping[str, Any]) -> str | None:
    """What to say plainly when the monthly result is the fallback, not Prophet's."""
    reason = monthly["forecast"].get("fallback_reason")
    if not reason:
        return None
    return (
        f"Fallback forecast, not Prophet: {reason}. The month total comes from the simple "
        f"fallback model ({monthly['forecast']['model_version']}); there are no Prophet "
        "components to show."
    )


def accuracy_frame(accuracy: Mapping[str, Any] | None) -> pd.DataFrame:
    """One row per completed month: actual total, forecasts made, MAPE, interval hits."""
    rows = []
    for month in (accuracy or {}).get("months", []):
        ahead = [f for f in month["forecasts"] if f["days_ahead"] > 0]
        rows.append(
            {
                "month": month["month"],
                "actual kWh": round(month["actual_kwh"], 1),
                "days observed": f"{month['days_observed']}/{month['days']}",
                "forecasts": len(ahead),
                "MAPE %": None if month.get("mape") is None else round(month["mape"], 1),
                "inside 80 %": (
                    f"{sum(f['inside_80'] for f in ahead)}/{len(ahead)}" if ahead else "-"
                ),
                "fallbacks": sum(bool(f.get("fallback_reason")) for f in ahead),
            }
        )
    return pd.DataFrame(rows)
