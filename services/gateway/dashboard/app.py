"""The wattstream dashboard (Streamlit); it talks only to the gateway HTTP API.

Run: ``WATTSTREAM_API_URL=http://127.0.0.1:8090 WATTSTREAM_API_TOKEN=... streamlit run
services/gateway/dashboard/app.py`` (``wattstream dashboard`` does this). The live tab
shows the readings, the past forecasts against them (with their interval band) and the
latest forecast, and the rolling 7-day forecast accuracy; it and the health panel refresh
every ``WATTSTREAM_REFRESH_S`` seconds (default 5). The live
window ends at the household's latest reading, so a replay of old data (``--start
original``) is shown as well as a live one.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import streamlit as st

from services.gateway.dashboard import views
from services.gateway.dashboard.client import GatewayApiError, GatewayClient

WINDOWS_H = {"1 h": 1, "6 h": 6, "24 h": 24, "3 days": 72, "7 days": 168}


@st.cache_resource
def _client(url: str, token: str) -> GatewayClient:
    return GatewayClient(url, token)


def _parse(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _last_reading(client: GatewayClient, household: str) -> dt.datetime:
    for row in client.households():
        if row["household_id"] == household and row.get("last_reading_at"):
            return _parse(row["last_reading_at"]) or dt.datetime.now(dt.UTC)
    return dt.datetime.now(dt.UTC)


def live_panel(client: GatewayClient, household: str, hours: int) -> None:
    """Actuals vs past forecasts and the latest forecast with their intervals, anomaly
    marks, and the rolling forecast accuracy."""
    last = _last_reading(client, household)
    end = last.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    start = end - dt.timedelta(hours=hours)
    resolution = "minute" if hours <= 24 else "hour"
    consumption = client.consumption(household, start, end, resolution)
    forecast = client.forecast(household)
    anomalies = client.anomalies(household, start, end + dt.timedelta(hours=1))
    actual, predicted, marks = views.live_frames(consumption, forecast, anomalies)
    past = views.history_frame(client.forecast_history(household, start, end))
    cols = st.columns(4)
    cols[0].metric("latest reading (UTC)", f"{last:%m-%d %H:%M}")
    cols[1].metric(f"energy, last {hours} h", f"{consumption['total_kwh']:.2f} kWh")
    if forecast:
        point = forecast["forecast"]["points"][0]
        cols[2].metric(
            "next forecast",
            f"{point['value_kw']:.2f} kW",
            f"{point['lower_kw']:.2f} - {point['upper_kw']:.2f} kW",
            delta_color="off",
        )
        cols[3].metric("anomalies in window", len(anomalies))
    else:
        cols[2].metric("next forecast", "none yet")
    if actual.empty and predicted.empty:
        st.info(f"no readings for {household} in this window yet")
        return
    st.altair_chart(views.live_chart(actual, predicted, marks, past), use_container_width=True)
    st.caption(
        f"{household}: {len(actual)} {resolution} points, forecast "
        f"{'issued ' + forecast['forecast']['issued_at'] if forecast else 'not available yet'}; "
        f"{len(past)} past forecasts (first step of each) against the actuals"
    )
    accuracy_section(client.accuracy(household))


def accuracy_section(accuracy: dict[str, Any] | None) -> None:
    """The rolling 7-day accuracy: MAE, MASE against seasonal naive, interval coverage."""
    rows = views.accuracy_rows(accuracy)
    if accuracy is None or not rows:
        st.caption("forecast accuracy: no forecast scored against actuals yet")
        return
    st.subheader("Forecast accuracy, last 7 days")
    head = rows[0]
    definitions = accuracy["definitions"]
    cols = st.columns(4)
    cols[0].metric(f"MAE, {head['horizon']}", f"{head['MAE (kW)']:.3f} kW")
    mase = head["MASE vs same as yesterday"]
    cols[1].metric(
        "MASE vs same as yesterday",
        "n/a" if mase is None else f"{mase:.2f}",
        help=definitions.get("mase"),
    )
    coverage = head["inside the interval"]
    cols[2].metric(
        "actuals inside the interval", f"{coverage:.0%}", help=definitions.get("coverage")
    )
    cols[3].metric("intervals scored", head["intervals scored"])
    st.dataframe(rows, hide_index=True)
    st.caption(
        f"7-day window {accuracy['window_start']} to {accuracy['window_end']} (UTC, ending "
        f"at the newest reading), intervals scored from {accuracy['first_scored_at']}; "
        "MASE below 1 beats the previous day's value"
    )


def month_panel(client: GatewayClient, household: str, month: str, tariff: float) -> None:
    """Actual to date, forecast to month end, intervals, cost; the Prophet plots (or a
    plain "fallback" notice); completed months' actual vs forecast."""
    monthly = client.monthly(household, month)
    if monthly is None:
        st.info(f"no monthly forecast for {household} in {month} yet")
        return
    summary = views.month_summary(monthly, tariff)
    fallback = views.fallback_notice(monthly)
    if fallback:
        st.warning(fallback)
    cols = st.columns(4)
    cols[0].metric(
        "actual to date",
        f"{summary.actual_kwh:.1f} kWh",
        f"{summary.cost(summary.actual_kwh):.2f} cost",
        delta_color="off",
    )
    cols[1].metric(
        "forecast to month end",
        f"{summary.rest_kwh:.1f} kWh",
        f"{summary.cost(summary.rest_kwh):.2f} cost",
        delta_color="off",
    )
    cols[2].metric(
        "month total",
        f"{summary.total_kwh:.1f} kWh",
        f"{summary.cost(summary.total_kwh):.2f} cost",
        delta_color="off",
    )
    lo80, hi80 = summary.total_80
    lo95, hi95 = summary.total_95
    cols[3].metric(
        "80 % / 95 % interval",
        f"{lo80:.0f}-{hi80:.0f} kWh",
        f"95 %: {lo95:.0f}-{hi95:.0f} kWh",
        delta_color="off",
    )
    frame = views.month_frame(monthly, tariff)
    if not frame.empty:
        st.altair_chart(views.month_chart(frame), use_container_width=True)
    st.caption(
        f"as of {monthly['forecast']['as_of']}, model {monthly['forecast']['model_version']}; "
        f"cost at {tariff:.4f} per kWh: {summary.cost(lo80):.2f}-{summary.cost(hi80):.2f} (80 %)"
    )
    if not fallback:  # the fallback has no components: no empty panels
        for name, path in monthly["plots"].items():
            try:
                st.image(client.plot(path), caption=f"Prophet {name}")
            except GatewayApiError as error:
                st.warning(f"plot {name}: {error.reason}")
    accuracy = views.accuracy_frame(client.monthly_accuracy(household))
    st.subheader("Completed months: actual vs forecast")
    if accuracy.empty:
        st.caption("no month completed yet: a month is scored when its last day arrives")
    else:
        st.dataframe(accuracy, hide_index=True)


def health_panel(client: GatewayClient) -> None:
    """Stream lag and throughput per consumer; quarantine and dead-letter queue depths."""
    try:
        health = client.pipeline_health()
    except GatewayApiError as error:
        st.info(f"pipeline health needs an operator token ({error.reason})")
        return
    consumers = health["consumers"]
    if consumers:
        st.dataframe(
            [
                {
                    "consumer": c["consumer"],
                    "lag (s)": round(c["lag_s"], 2),
                    "idle (s)": round(c["idle_s"], 1),
                    "records/s": round(c["records_per_s"], 2),
                    "last event": c["last_event_at"],
                }
                for c in consumers
            ],
            hide_index=True,
        )
    else:
        st.info("no consumer has processed anything yet")
    queues = health["queues"]
    if queues:
        cols = st.columns(len(queues))
        for col, (name, depth) in zip(cols, queues.items(), strict=True):
            col.metric(name, "?" if depth is None else depth)


def controls_panel(client: GatewayClient, refresh_s: float) -> None:
    """Start a replay (stream processing), upload a file (batch processing), watch both."""
    left, right = st.columns(2)
    with left, st.form("replay"):
        st.subheader("Replay real data")
        households = st.number_input("households", min_value=1, max_value=10_000, value=1)
        speed = st.text_input("speed (x real time, or max)", value="600")
        start = st.radio("timestamps", ["now", "original"], horizontal=True)
        if st.form_submit_button("start replay"):
            try:
                job = client.start_replay(int(households), speed, start)
                st.success(f"started {job['id']}")
            except GatewayApiError as error:
                st.error(error.reason)
    with right, st.form("upload"):
        st.subheader("Upload a historical file")
        upload = st.file_uploader("UCI file (.txt, .txt.gz, .csv)")
        household = st.text_input("household (optional)", value="")
        utc_offset = st.text_input(
            "UTC offset of the file's times (+HH:MM, or uci for the UCI file's +01:00)",
            value="",
        )
        if st.form_submit_button("upload") and upload is not None:
            try:
                status = client.upload(
                    upload.name, upload.getvalue(), household or None, utc_offset or None
                )
                st.session_state.setdefault("uploads", []).append(status["key"])
                st.success(f"uploaded as {status['key']}")
            except GatewayApiError as error:
                st.error(error.reason)

    @st.fragment(run_every=refresh_s)
    def progress() -> None:
        try:
            jobs = client.replay_jobs()
        except GatewayApiError as error:
            st.caption(f"replays: {error.reason}")
            jobs = []
        for job in jobs[:5]:
            label = f"{job['id']} ({job['state']}): {job['readings_published']:,} readings"
            st.progress(job["fraction"], text=label)
            if job.get("error"):
                st.error(job["error"])
        for key in st.session_state.get("uploads", [])[-5:]:
            status = client.upload_status(key)
            st.write(f"upload {key}: {status['state']}")
            if status["report"]:
                st.json(status["report"], expanded=False)

    progress()


def main() -> None:
    st.set_page_config(page_title="wattstream", layout="wide")
    url = os.environ.get("WATTSTREAM_API_URL", "http://127.0.0.1:8090")
    token = os.environ.get("WATTSTREAM_API_TOKEN", "")
    refresh_s = float(os.environ.get("WATTSTREAM_REFRESH_S", "5"))
    client = _client(url, token)
    st.title("wattstream")
    try:
        households = client.households()
    except (GatewayApiError, OSError) as error:
        st.error(f"the gateway API at {url} refused or is unreachable: {error}")
        return
    ids = [row["household_id"] for row in households]
    with st.sidebar:
        household = st.selectbox("household", ids, index=0 if ids else None)
        window = st.select_slider("live window", options=list(WINDOWS_H), value="6 h")
        tariff = st.number_input(
            "tariff per kWh", min_value=0.0, value=0.20, step=0.01, format="%.4f"
        )
        st.caption(f"API {url}; refresh every {refresh_s:g} s")
    live, month, pipeline = st.tabs(["Live", "Month", "Pipeline"])
    with live:
        if household is None:
            st.info("no households yet: start a replay in the Pipeline tab")
        else:
            st.fragment(run_every=refresh_s)(live_panel)(client, household, WINDOWS_H[window])
    with month:
        if household is not None:
            last = _last_reading(client, household)
            chosen = st.text_input("month (YYYY-MM)", value=f"{last:%Y-%m}")
            _guarded(month_panel, client, household, chosen, tariff)
    with pipeline:
        st.fragment(run_every=refresh_s)(health_panel)(client)
        controls_panel(client, refresh_s)


def _guarded(panel: Any, *args: Any) -> None:
    try:
        panel(*args)
    except GatewayApiError as error:
        st.error(f"{error.code}: {error.reason}")


main()
