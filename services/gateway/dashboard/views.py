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
    "MONTH_COLORS",
    "SERIES_COLORS",
    "TIMEZONE",
    "MonthSummary",
    "accuracy_frame",
    "accuracy_rows",
    "anomaly_label",
    "fallback_notice",
    "fleet_rows",
    "history_frame",
    "live_chart",
    "live_frames",
    "money",
    "month_chart",
    "month_frame",
    "month_sum_line",
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
TIMEZONE = "UTC"
"""Every time on the dashboard is UTC (the API's clock); axes and captions say so."""
_STEP_S = {"minute": 60, "hour": 3600}


def money(amount: float, currency: str) -> str:
    """An amount with its currency code in front (``GBP 14.87``): never a bare number."""
    return f"{currency} {amount:,.2f}"


def _time_x(title: str = f"time ({TIMEZONE})") -> alt.X:
    """A time axis drawn in UTC whatever the browser's timezone, titled with it: 24-hour
    labels, and the date where a day starts."""
    midnight = "utchours(datum.value) == 0 && utcminutes(datum.value) == 0"
    labels = f"utcFormat(datum.value, {midnight} ? '%d %b' : '%H:%M')"
    return alt.X(
        "time:T", title=title, scale=alt.Scale(type="utc"), axis=alt.Axis(labelExpr=labels)
    )


def _time_tooltip(field: str = "time") -> alt.Tooltip:
    return alt.Tooltip(
        f"{field}:T", title=f"{field} ({TIMEZONE})", format="%Y-%m-%d %H:%M", formatType="utc"
    )


def _segments(times: pd.Series, step_s: float) -> pd.Series:
    """A run number per point that changes after each gap, so a line is never drawn across
    missing data (each run is its own path)."""
    if times.empty:
        return pd.Series([], dtype=int)
    jumps = times.diff().dt.total_seconds() > 1.5 * step_s
    return jumps.cumsum().astype(int)


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
    """Actuals (time, kW, gap-separated ``segment``), the forecast (time, kW, lower,
    upper) and anomaly times."""
    points = (consumption or {}).get("points", [])
    step_s = _STEP_S.get((consumption or {}).get("resolution", "minute"), 60)
    times = pd.Series(pd.to_datetime([p["start"] for p in points], utc=True))
    actual = pd.DataFrame(
        {
            "time": times,
            "kw": [p["mean_kw"] for p in points],
            "series": "actual",
            "segment": _segments(times, step_s),
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
            "kind": [a.get("kind") or "anomaly" for a in anomalies],
            "kwh": [a.get("kwh") for a in anomalies],
            "minutes": [
                None if a.get("duration_s") is None else a["duration_s"] / 60 for a in anomalies
            ],
            "what": [anomaly_label(a) for a in anomalies],
            "score": [a["score"] for a in anomalies],
        }
    )
    return actual, predicted, marks


def anomaly_label(mark: Mapping[str, Any]) -> str:
    """What an anomaly mark says, in words: its kind and how large (energy above or below
    the household's usual use, over how long); the score alone from older producers.

    >>> anomaly_label({"kind": "excess", "kwh": 3.25, "duration_s": 9000, "score": 2.0})
    'excess: +3.25 kWh vs usual over 2 h 30 min'
    >>> anomaly_label({"score": 3.5})
    'anomaly (score 3.50)'
    """
    kind, kwh, duration_s = mark.get("kind"), mark.get("kwh"), mark.get("duration_s")
    if kind is None:
        return f"anomaly (score {mark['score']:.2f})"
    parts = [kind.replace("_", " ")]
    if kwh is not None:
        parts.append(f": {kwh:+.2f} kWh vs usual")
    if duration_s:
        hours, minutes = divmod(round(duration_s / 60), 60)
        span = (
            f"{hours} h {minutes} min"
            if hours and minutes
            else f"{hours} h"
            if hours
            else f"{minutes} min"
        )
        parts.append(f" over {span}")
    return "".join(parts)


def live_chart(
    actual: pd.DataFrame,
    predicted: pd.DataFrame,
    marks: pd.DataFrame,
    past: pd.DataFrame | None = None,
) -> alt.LayerChart:
    """Actual kW, past forecasts (a step per interval) with their band, the latest
    forecast with its band, anomalies as red rules; the legend names every series/band."""
    x = _time_x()
    kw = alt.Y("kw:Q", title="power (kW)")
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
                tooltip=[_time_tooltip(), *_kw_tips("lower", "upper", "actual")],
            )
        )
    if not predicted.empty:
        band = predicted.assign(band="forecast interval")
        layers.append(
            alt.Chart(band)
            .mark_area(opacity=0.45)
            .encode(
                x=x,
                y=alt.Y("lower:Q", title="power (kW)"),
                y2="upper:Q",
                color=alt.Color("band:N", scale=scale),
                tooltip=[_time_tooltip(), *_kw_tips("lower", "kw", "upper")],
            )
        )
    layers.append(
        alt.Chart(actual)
        .mark_line(strokeWidth=1)
        .encode(
            x=x,
            y=kw,
            color=color,
            detail="segment:N",  # one path per run of readings: gaps stay gaps
            tooltip=[_time_tooltip(), *_kw_tips("kw")],
        )
    )
    if past is not None and not past.empty:
        layers.append(
            alt.Chart(past)
            .mark_line(interpolate="step-after", strokeWidth=2)
            .encode(x=x, y=kw, color=color, tooltip=[_time_tooltip(), *_kw_tips("kw", "actual")])
        )
    if not predicted.empty:
        layers.append(
            alt.Chart(predicted)
            .mark_line(point=True)
            .encode(x=x, y=kw, color=color, tooltip=[_time_tooltip(), *_kw_tips("kw")])
        )
    if not marks.empty:
        layers.append(
            alt.Chart(marks)
            .mark_rule(color="red", strokeDash=[4, 2])
            .encode(
                x=x,
                tooltip=[
                    _time_tooltip(),
                    alt.Tooltip("what:N", title="anomaly"),
                    alt.Tooltip("kwh:Q", title="energy vs usual (kWh)", format="+.2f"),
                    alt.Tooltip("minutes:Q", title="duration (min)", format=".0f"),
                    alt.Tooltip("score:Q", format=".2f"),
                ],
            )
        )
    return alt.LayerChart(layer=layers, height=320)


def _kw_tips(*fields: str) -> list[alt.Tooltip]:
    return [alt.Tooltip(f"{f}:Q", title=f"{f} (kW)", format=".3f") for f in fields]


@dataclass(frozen=True)
class MonthSummary:
    """The month's energy and cost: to date, the estimate of the days without (complete)
    readings, the rest, the total, and the 80 %/95 % intervals.

    ``actual_kwh + gap_kwh + rest_kwh == total_kwh``: the monthly service estimates the
    days of the month so far that are missing or incomplete and counts them only in the
    total, so the dashboard shows them as their own term (``gap_days`` of them).
    """

    actual_kwh: float
    gap_kwh: float
    gap_days: int
    rest_kwh: float
    total_kwh: float
    total_80: tuple[float, float]
    total_95: tuple[float, float]
    tariff: float

    def cost(self, kwh: float) -> float:
        return kwh * self.tariff


def month_summary(monthly: Mapping[str, Any], tariff: float) -> MonthSummary:
    f = monthly["forecast"]
    as_of = pd.Timestamp(f["as_of"]).date()
    gap_days = sum(
        1 for d in f["daily"] if not d["is_actual"] and pd.Timestamp(d["date"]).date() <= as_of
    )
    gap_kwh = f["month_total_kwh"] - f["actual_to_date_kwh"] - f["rest_of_month_kwh"]
    return MonthSummary(
        actual_kwh=f["actual_to_date_kwh"],
        gap_kwh=0.0 if abs(gap_kwh) < 1e-9 else gap_kwh,
        gap_days=gap_days,
        rest_kwh=f["rest_of_month_kwh"],
        total_kwh=f["month_total_kwh"],
        total_80=(f["month_total_lower_80"], f["month_total_upper_80"]),
        total_95=(f["month_total_lower_95"], f["month_total_upper_95"]),
        tariff=tariff,
    )


def month_sum_line(summary: MonthSummary, currency: str) -> str:
    """The month's sum written out, so the numbers on screen visibly add up."""
    terms = [f"{summary.actual_kwh:.1f} kWh measured"]
    if summary.gap_days or summary.gap_kwh:
        terms.append(
            f"{summary.gap_kwh:.1f} kWh estimated for {summary.gap_days} day(s) so far "
            "without complete readings"
        )
    terms.append(f"{summary.rest_kwh:.1f} kWh forecast to month end")
    return (
        " + ".join(terms)
        + f" = {summary.total_kwh:.1f} kWh month total"
        + f" ({money(summary.cost(summary.total_kwh), currency)})"
    )


def month_frame(monthly: Mapping[str, Any], tariff: float) -> pd.DataFrame:
    """One row per day: kWh, its intervals, actual or forecast, and its cost."""
    daily = monthly["forecast"]["daily"]
    frame = pd.DataFrame(daily)
    if frame.empty:
        return frame
    frame["date"] = pd.to_datetime(frame["date"])
    as_of = pd.Timestamp(monthly["forecast"]["as_of"])
    frame["kind"] = "forecast"
    frame.loc[frame["is_actual"], "kind"] = "actual"
    frame.loc[~frame["is_actual"] & (frame["date"] <= as_of), "kind"] = "estimated (gap day)"
    frame["cost"] = frame["kwh"] * tariff
    return frame


MONTH_COLORS: dict[str, str] = {
    "actual": "#1f77b4",
    "estimated (gap day)": "#9467bd",
    "forecast": "#ff7f0e",
    "80 % interval": "#333333",
    "95 % interval": "#999999",
}
"""The month chart's legend: bars by kind and both interval whiskers, each named."""


def month_chart(frame: pd.DataFrame, currency: str = "GBP") -> alt.LayerChart:
    """Daily kWh: actual, estimated (gap days) and forecast bars, with labelled 80 % and
    95 % interval whiskers on the estimated days."""
    x = alt.X(
        "date:T",
        title=f"day ({TIMEZONE})",
        scale=alt.Scale(type="utc"),
        axis=alt.Axis(format="%d %b", formatType="utc"),
    )
    colors = alt.Scale(domain=list(MONTH_COLORS), range=list(MONTH_COLORS.values()))
    tips = [
        alt.Tooltip("date:T", title="day", format="%Y-%m-%d", formatType="utc"),
        alt.Tooltip("kwh:Q", title="energy (kWh)", format=".2f"),
        alt.Tooltip("cost:Q", title=f"cost ({currency})", format=".2f"),
        alt.Tooltip("kind:N"),
    ]
    bars = (
        alt.Chart(frame)
        .mark_bar(opacity=0.8)
        .encode(
            x=x,
            y=alt.Y("kwh:Q", title="energy per day (kWh)"),
            color=alt.Color("kind:N", scale=colors, title=None),
            tooltip=tips,
        )
    )
    estimated = frame[~frame["is_actual"]] if not frame.empty else frame
    band95 = (
        alt.Chart(estimated.assign(band="95 % interval"))
        .mark_rule(strokeWidth=1)
        .encode(x=x, y="lower_95:Q", y2="upper_95:Q", color=alt.Color("band:N", scale=colors))
    )
    band80 = (
        alt.Chart(estimated.assign(band="80 % interval"))
        .mark_rule(strokeWidth=3)
        .encode(x=x, y="lower_80:Q", y2="upper_80:Q", color=alt.Color("band:N", scale=colors))
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


def fleet_rows(
    households: Sequence[Mapping[str, Any]], fleet: Mapping[str, Any] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The operator's fleet tables: households by latest reading (UTC), and the pooled
    accuracy per horizon (MAE in kW, MASE, interval coverage, share beating naive)."""
    names = {"next": "next interval", "day_ahead": "day ahead"}
    homes = [
        {"household": h["household_id"], f"latest reading ({TIMEZONE})": h.get("last_reading_at")}
        for h in households
    ]
    accuracy = []
    for horizon, f in ((fleet or {}).get("horizons") or {}).items():
        pooled = f.get("pooled") or {}
        if not pooled.get("pairs"):
            continue
        accuracy.append(
            {
                "horizon": names.get(horizon, horizon),
                "households": f["households"],
                "intervals scored": pooled["pairs"],
                "MAE (kW)": _rounded(pooled.get("mae_kw"), 3),
                "MASE, pooled": _rounded(pooled.get("mase"), 2),
                "median household MASE": _rounded(f.get("median_household_mase"), 2),
                "households beating same as yesterday": _rounded(f.get("share_beating_naive"), 3),
                "inside the interval": _rounded(pooled.get("coverage"), 3),
            }
        )
    return homes, accuracy


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
