"""The wattstream dashboard (Streamlit); it talks only to the gateway HTTP API.

Run: ``WATTSTREAM_API_URL=http://127.0.0.1:8090 streamlit run
services/gateway/dashboard/app.py`` (``wattstream run`` / ``serve gateway`` do this).

Nobody is signed in by the server: each visitor signs in with their own token (``wattstream
token --household ID`` for a household, ``--operator`` for an operator). The token lives
only in that browser session and every call goes to the API with it, so the API's scoping
is the dashboard's: a household sees only its own data; an operator sees the fleet
(households, pipeline health, accuracy, anomalies) and the pipeline controls. Energy is in
kWh, power in kW, money in ``WATTSTREAM_CURRENCY`` (default GBP) at a tariff per kWh
(``WATTSTREAM_TARIFF``, editable in the sidebar); every time is UTC. The live tab
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

import httpx
import streamlit as st

from services.gateway.dashboard import views
from services.gateway.dashboard.client import GatewayApiError, GatewayClient, Viewer

WINDOWS_H = {"1 h": 1, "6 h": 6, "24 h": 24, "3 days": 72, "7 days": 168}
# The live tab lists at most this many anomaly marks under its chart, latest first.
LIVE_ANOMALY_LINES = 10
# The operator's anomaly table asks for at most this many households (latest first). A
# comment, not a docstring: Streamlit's "magic" would print a bare string on the page.
FLEET_ANOMALY_HOUSEHOLDS = 50


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
    cols[0].metric("latest reading (UTC)", f"{last:%d %b %H:%M}")
    cols[0].caption(f"{last:%Y-%m-%d %H:%M} UTC")
    cols[1].metric(f"energy, last {hours} h", f"{consumption['total_kwh']:.2f} kWh")
    if forecast:
        point = forecast["forecast"]["points"][0]
        cols[2].metric("next forecast (mean power)", f"{point['value_kw']:.2f} kW")
        cols[2].caption(
            f"prediction interval {point['lower_kw']:.2f} to {point['upper_kw']:.2f} kW, "
            f"for {_parse(point['timestamp']):%H:%M} UTC"
        )
        cols[3].metric("anomalies in window", len(anomalies))
    else:
        cols[2].metric("next forecast", "none yet")
    if actual.empty and predicted.empty:
        st.info(f"no readings for {household} in this window yet")
        return
    st.altair_chart(views.live_chart(actual, predicted, marks, past), use_container_width=True)
    if not marks.empty:  # as text, latest first (a data grid is a canvas: not readable)
        latest = marks.sort_values("time", ascending=False).head(LIVE_ANOMALY_LINES)
        st.markdown(
            "\n".join(
                f"- anomaly flagged {row.time:%Y-%m-%d %H:%M} UTC: {row.what} "
                f"(score {row.score:.2f})"
                for row in latest.itertuples()
            )
        )
    st.caption(
        f"{household}: {len(actual)} {resolution} points (times in UTC; a break in the "
        "line is a gap in the readings), forecast "
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


def month_panel(
    client: GatewayClient, household: str, month: str, tariff: float, currency: str
) -> None:
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
    terms = [
        ("measured to date", summary.actual_kwh),
        (f"estimated, {summary.gap_days} gap day(s)", summary.gap_kwh),
        ("forecast to month end", summary.rest_kwh),
        ("month total", summary.total_kwh),
    ]
    cols = st.columns(4)
    for col, (label, kwh) in zip(cols, terms, strict=True):
        col.metric(label, f"{kwh:.1f} kWh")
        col.caption(f"cost {views.money(summary.cost(kwh), currency)}")
    lo80, hi80 = summary.total_80
    lo95, hi95 = summary.total_95
    cols[3].caption(
        f"80 % interval {lo80:.0f} to {hi80:.0f} kWh "
        f"({views.money(summary.cost(lo80), currency)} to "
        f"{views.money(summary.cost(hi80), currency)}); 95 % interval {lo95:.0f} to "
        f"{hi95:.0f} kWh"
    )
    st.markdown(views.month_sum_line(summary, currency))
    frame = views.month_frame(monthly, tariff)
    if not frame.empty:
        st.altair_chart(views.month_chart(frame, currency), use_container_width=True)
    st.caption(
        f"as of {monthly['forecast']['as_of']} (days in UTC), model "
        f"{monthly['forecast']['model_version']}; tariff "
        f"{views.money(tariff, currency)} per kWh. Days of the month so far without complete "
        "readings are estimated like the future days and counted in the total."
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
    st.subheader("Pipeline health")
    consumers = health["consumers"]
    if consumers:
        st.dataframe(
            [
                {
                    "consumer": c["consumer"],
                    "lag (s)": round(c["lag_s"], 2),
                    "idle (s)": round(c["idle_s"], 1),
                    "records/s": round(c["records_per_s"], 2),
                    "last event (UTC)": c["last_event_at"],
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
            col.metric(f"messages in {name}", "?" if depth is None else depth)


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


def fleet_panel(client: GatewayClient, households: list[dict[str, Any]]) -> None:
    """The operator's overview: every household, the fleet's accuracy, recent anomalies."""
    homes, accuracy = views.fleet_rows(households, client.fleet_accuracy())
    st.subheader(f"Households ({len(homes)})")
    st.dataframe(homes, hide_index=True)
    st.subheader("Fleet forecast accuracy, last 7 days")
    if accuracy:
        st.dataframe(accuracy, hide_index=True)
        st.caption(
            "pooled over every household with readings in the last 7 days (UTC); MASE below 1 "
            "beats the same value a day earlier; inside the interval: share of actuals inside "
            "the forecast's prediction interval"
        )
    else:
        st.caption("no forecast scored against actuals yet")
    st.subheader("Anomalies, last 24 h of each household")
    rows = []
    latest = sorted(
        (h for h in households if h.get("last_reading_at")),
        key=lambda h: h["last_reading_at"],
        reverse=True,
    )
    for home in latest[:FLEET_ANOMALY_HOUSEHOLDS]:
        end = _parse(home["last_reading_at"]) or dt.datetime.now(dt.UTC)
        for mark in client.anomalies(home["household_id"], end - dt.timedelta(hours=24), end):
            rows.append(
                {
                    "household": home["household_id"],
                    "time (UTC)": mark["timestamp"],
                    "kind": mark.get("kind"),
                    "energy vs usual (kWh)": mark.get("kwh"),
                    "duration (min)": (
                        None if mark.get("duration_s") is None else mark["duration_s"] / 60
                    ),
                    "score": round(mark["score"], 2),
                }
            )
    if rows:
        st.dataframe(rows, hide_index=True)
    else:
        st.caption("no anomaly flagged in the last 24 h of any household")
    if len(latest) > FLEET_ANOMALY_HOUSEHOLDS:
        st.caption(f"anomalies of the {FLEET_ANOMALY_HOUSEHOLDS} most recently active households")


def sign_in(url: str, notice: str | None = None) -> None:
    """The sign-in form: the visitor's own token, checked with the API, kept in their
    session only (never in the URL, never on the server's command line)."""
    st.title("wattstream")
    if notice:
        st.warning(notice)
    with st.form("sign-in"):
        token = st.text_input(
            "access token",
            type="password",
            help="Ask your operator, or run `wattstream token --household ID` "
            "(`--operator` for the fleet view).",
        )
        submitted = st.form_submit_button("sign in")
    st.caption(
        "A household token shows that household's consumption, forecasts and month; an "
        "operator token shows the whole fleet and the pipeline controls. Get one with "
        "`wattstream token --household ID` (or `wattstream token --operator`)."
    )
    if not submitted:
        return
    client = GatewayClient(url, token.strip())
    try:
        viewer = client.whoami()
    except GatewayApiError as error:
        client.close()
        st.error(f"sign-in refused: {error.reason}")
        return
    except (httpx.HTTPError, OSError) as error:
        client.close()
        st.error(f"the gateway API at {url} is unreachable: {error}")
        return
    st.session_state["client"] = client
    st.session_state["viewer"] = viewer
    st.rerun()


def sign_out(notice: str | None = None) -> None:
    client = st.session_state.pop("client", None)
    if client is not None:
        client.close()
    st.session_state.clear()
    if notice:
        st.session_state["notice"] = notice
    st.rerun()


def main() -> None:
    st.set_page_config(page_title="wattstream", layout="wide")
    url = os.environ.get("WATTSTREAM_API_URL", "http://127.0.0.1:8090")
    refresh_s = float(os.environ.get("WATTSTREAM_REFRESH_S", "5"))
    currency = os.environ.get("WATTSTREAM_CURRENCY", "GBP")
    default_tariff = float(os.environ.get("WATTSTREAM_TARIFF", "0.20"))
    client: GatewayClient | None = st.session_state.get("client")
    viewer: Viewer | None = st.session_state.get("viewer")
    if client is None or viewer is None:
        sign_in(url, st.session_state.pop("notice", None))
        return
    try:
        households = client.households()
    except GatewayApiError as error:
        if error.status == 401:
            sign_out(f"signed out: {error.reason}")
        st.error(f"the gateway API at {url} refused: {error.reason}")
        return
    except (httpx.HTTPError, OSError) as error:
        st.error(f"the gateway API at {url} is unreachable: {error}")
        return
    ids = [row["household_id"] for row in households]
    title = "wattstream: fleet" if viewer.operator else f"wattstream: {', '.join(ids)}"
    st.title(title)
    with st.sidebar:
        who = "operator (every household)" if viewer.operator else "household " + ", ".join(ids)
        st.markdown(f"Signed in as **{who}**")
        if st.button("sign out"):
            sign_out()
        household = st.selectbox("household", ids, index=0 if ids else None)
        window = st.select_slider("live window", options=list(WINDOWS_H), value="6 h")
        tariff = st.number_input(
            f"tariff ({currency} per kWh)",
            min_value=0.0,
            value=default_tariff,
            step=0.01,
            format="%.4f",
        )
        st.caption(f"times in {views.TIMEZONE}; API {url}; refresh every {refresh_s:g} s")
    if viewer.operator:
        fleet, live, month, pipeline = st.tabs(["Fleet", "Live", "Month", "Pipeline"])
        with fleet:
            _guarded(fleet_panel, client, households)
    else:
        live, month = st.tabs(["Live", "Month"])
    with live:
        if household is None:
            st.info(
                "no households yet: start a replay in the Pipeline tab"
                if viewer.operator
                else "no readings for this token's household yet"
            )
        else:
            st.fragment(run_every=refresh_s)(_guarded)(
                live_panel, client, household, WINDOWS_H[window]
            )
    with month:
        if household is not None:
            last = _last_reading(client, household)
            chosen = st.text_input("month (YYYY-MM)", value=f"{last:%Y-%m}")
            _guarded(month_panel, client, household, chosen, tariff, currency)
    if viewer.operator:
        with pipeline:
            st.fragment(run_every=refresh_s)(health_panel)(client)
            controls_panel(client, refresh_s)


def _guarded(panel: Any, *args: Any) -> None:
    try:
        panel(*args)
    except GatewayApiError as error:
        st.error(f"{error.code}: {error.reason}")


main()
