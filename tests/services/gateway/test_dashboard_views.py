"""The dashboard's API client and view builders, against the API on fakes (no browser)."""

from __future__ import annotations

import datetime as dt

import pytest

from services.gateway.dashboard import views
from services.gateway.dashboard.client import GatewayApiError, GatewayClient, Viewer
from services.gateway.shells import serve
from testing.reliability.gateway_world import NOW, PNG, A, B


@pytest.fixture
def client(world):
    return GatewayClient("http://testserver", world.token(operator=True), http=world.client)


def test_dashboard_client_reads_what_the_api_serves(client):
    start = NOW - dt.timedelta(hours=2)

    assert [h["household_id"] for h in client.households()] == [A, B]
    assert len(client.consumption(A, start, NOW, "minute")["points"]) == 120
    assert client.forecast(A)["forecast"]["household_id"] == A
    assert client.forecast("uci-0404") is None  # 404 is "nothing yet", not an error
    monthly = client.monthly(A, "2007-04")
    assert client.plot(monthly["plots"]["components"]) == PNG


def test_dashboard_client_raises_the_api_error(world):
    household = GatewayClient("http://testserver", world.token(A), http=world.client)

    with pytest.raises(GatewayApiError) as error:
        household.consumption(B, NOW - dt.timedelta(hours=1), NOW, "minute")
    assert (error.value.status, error.value.code) == (403, "forbidden")


def test_dashboard_client_pipeline_controls(client, world):
    job = client.start_replay(2, "max", "original")
    status = client.upload("april.txt", b"data", "uci-0007", "uci")

    assert job["request"] == {"households": 2, "speed": "max", "start": "original"}
    assert client.replay_jobs()[0]["id"] == job["id"]
    assert client.upload_status(status["key"])["state"] == "pending"
    assert world.uploads.objects == {"uploads/uci-0007/april.txt": b"data"}
    assert world.uploads.metadata["uploads/uci-0007/april.txt"] == {"utc-offset": "+01:00"}


def test_dashboard_views_live_frames_and_chart(client):
    start = NOW - dt.timedelta(hours=3)
    actual, predicted, marks = views.live_frames(
        client.consumption(A, start, NOW, "minute"),
        client.forecast(A),
        client.anomalies(A, start, NOW),
    )

    assert len(actual) == 180
    assert (predicted["lower"] <= predicted["kw"]).all()
    assert (predicted["kw"] <= predicted["upper"]).all()
    assert len(marks) == 1
    spec = views.live_chart(actual, predicted, marks).to_dict()
    assert len(spec["layer"]) == 4  # actual, band, forecast, anomaly rules


def test_dashboard_views_anomaly_marks_say_their_kind_and_size(client):
    start = NOW - dt.timedelta(hours=3)
    actual, predicted, marks = views.live_frames(
        client.consumption(A, start, NOW, "minute"), None, client.anomalies(A, start, NOW)
    )

    assert marks["what"].tolist() == ["excess: +1.50 kWh vs usual over 1 h"]
    assert marks["kind"].tolist() == ["excess"]
    assert marks["minutes"].tolist() == [60]
    rule = views.live_chart(actual, predicted, marks).to_dict()["layer"][-1]
    assert {"what", "kwh", "minutes", "score"} <= {t["field"] for t in rule["encoding"]["tooltip"]}
    older = {"timestamp": NOW.isoformat(), "score": 3.5}  # an older producer's mark
    assert views.live_frames(None, None, [older])[2]["what"].tolist() == ["anomaly (score 3.50)"]
    assert views.anomaly_label(
        {"kind": "stuck_zero", "kwh": -0.9, "duration_s": 1800, "score": 2}
    ) == ("stuck zero: -0.90 kWh vs usual over 30 min")


def test_dashboard_views_month_cost_at_tariff(client):
    monthly = client.monthly(A, "2007-04")

    summary = views.month_summary(monthly, tariff=0.25)
    frame = views.month_frame(monthly, tariff=0.25)

    assert summary.cost(summary.total_kwh) == pytest.approx(225.0)
    assert summary.total_80 == (850.0, 950.0)
    assert frame["kind"].value_counts().to_dict() == {"forecast": 28, "actual": 2}
    assert frame["cost"].sum() == pytest.approx(30 * 30.0 * 0.25)
    assert views.month_chart(frame).to_dict()["layer"]


def test_dashboard_client_reads_accuracy_and_history(client):
    assert client.accuracy(A)["horizons"]["next"]["pairs"] == 48
    assert client.accuracy("uci-0404") is None  # nothing scored yet, not an error
    assert client.fleet_accuracy()["households"] == 2
    history = client.forecast_history(A, NOW - dt.timedelta(hours=2), NOW)
    assert len(history["points"]) == 4


def test_dashboard_views_past_forecasts_against_actuals_with_labelled_bands(client):
    start = NOW - dt.timedelta(hours=3)
    actual, predicted, marks = views.live_frames(
        client.consumption(A, start, NOW, "minute"),
        client.forecast(A),
        client.anomalies(A, start, NOW),
    )
    past = views.history_frame(client.forecast_history(A, start, NOW))

    assert len(past) == 6
    assert (past["lower"] <= past["actual"]).all()
    assert past["inside"].all()
    spec = views.live_chart(actual, predicted, marks, past).to_dict()
    assert len(spec["layer"]) == 6  # past band, band, actual, past forecasts, forecast, rules
    legend = spec["layer"][0]["encoding"]["color"]["scale"]["domain"]
    assert "past forecasts' interval" in legend
    assert "forecast interval" in legend


def test_dashboard_views_accuracy_rows_only_scored_horizons(client):
    rows = views.accuracy_rows(client.accuracy(A))

    assert rows == [
        {
            "horizon": "next interval",
            "intervals scored": 48,
            "MAE (kW)": 0.1,
            "MASE vs same as yesterday": None,
            "inside the interval": 1.0,
            "bias (kW)": 0.1,
        }
    ]
    assert views.accuracy_rows(None) == []


def test_dashboard_views_say_fallback_plainly_only_for_the_fallback(client):
    monthly = client.monthly(A, "2007-04")
    fallback = {
        **monthly,
        "forecast": {**monthly["forecast"], "fallback_reason": "short_history: 12 usable days"},
    }

    assert views.fallback_notice(monthly) is None
    notice = views.fallback_notice(fallback)
    assert notice is not None
    assert notice.startswith("Fallback forecast, not Prophet")
    assert "12 usable days" in notice


def test_dashboard_views_accuracy_frame_one_row_per_completed_month(client):
    frame = views.accuracy_frame(client.monthly_accuracy(A))

    assert frame.to_dict("records") == [
        {
            "month": "2007-03",
            "actual kWh": 1000.0,
            "days observed": "31/31",
            "forecasts": 2,
            "MAPE %": 5.0,
            "inside 80 %": "1/2",
            "fallbacks": 0,
        }
    ]
    assert views.accuracy_frame(None).empty


def test_dashboard_client_whoami_tells_operator_from_household(world):
    operator = GatewayClient("http://testserver", world.token(operator=True), http=world.client)
    household = GatewayClient("http://testserver", world.token(A), http=world.client)

    assert operator.whoami() == Viewer(operator=True, households=(A, B))
    assert household.whoami() == Viewer(operator=False, households=(A,))


def test_dashboard_client_whoami_refuses_a_bad_token(world):
    forged = GatewayClient("http://testserver", "not-a-token", http=world.client)

    with pytest.raises(GatewayApiError) as error:
        forged.whoami()
    assert error.value.status == 401


def _with_gap_day(monthly):
    """Day 2 of the fixture month without complete readings: estimated, in the total only."""
    forecast = monthly["forecast"]
    daily = [
        {**d, "is_actual": d["date"] in ("2007-04-01", "2007-04-03")} for d in forecast["daily"]
    ]
    return {
        **monthly,
        "forecast": {
            **forecast,
            "as_of": "2007-04-03",
            "daily": daily,
            "actual_to_date_kwh": 60.0,
            "rest_of_month_kwh": 810.0,
            "month_total_kwh": 900.0,
        },
    }


def test_dashboard_views_month_terms_add_up_with_gap_days(client):
    monthly = _with_gap_day(client.monthly(A, "2007-04"))

    summary = views.month_summary(monthly, tariff=0.25)
    frame = views.month_frame(monthly, tariff=0.25)

    assert (summary.gap_days, summary.gap_kwh) == (1, pytest.approx(30.0))
    assert summary.actual_kwh + summary.gap_kwh + summary.rest_kwh == pytest.approx(
        summary.total_kwh
    )
    assert frame["kind"].value_counts().to_dict() == {
        "forecast": 27,
        "actual": 2,
        "estimated (gap day)": 1,
    }
    line = views.month_sum_line(summary, "GBP")
    assert line == (
        "60.0 kWh measured + 30.0 kWh estimated for 1 day(s) so far without complete "
        "readings + 810.0 kWh forecast to month end = 900.0 kWh month total (GBP 225.00)"
    )


def test_dashboard_views_month_without_gaps_has_no_gap_term(client):
    summary = views.month_summary(client.monthly(A, "2007-04"), tariff=0.25)

    assert (summary.gap_days, summary.gap_kwh) == (0, 0.0)
    assert "estimated" not in views.month_sum_line(summary, "EUR")
    assert views.month_sum_line(summary, "EUR").endswith("(EUR 225.00)")


def test_dashboard_views_money_has_its_currency():
    assert views.money(14.8712, "GBP") == "GBP 14.87"
    assert views.money(1234.5, "EUR") == "EUR 1,234.50"


def test_dashboard_views_gaps_break_the_actual_line(client):
    consumption = client.consumption(A, NOW - dt.timedelta(hours=2), NOW, "minute")
    points = consumption["points"]
    holed = {**consumption, "points": points[:30] + points[50:]}  # 20 minutes missing

    actual, _, _ = views.live_frames(holed, None, [])
    spec = views.live_chart(actual, actual.iloc[:0].assign(lower=[], upper=[]), actual.iloc[:0])

    assert actual["segment"].tolist() == [0] * 30 + [1] * (len(points) - 50)
    line = next(layer for layer in spec.to_dict()["layer"] if layer["mark"]["type"] == "line")
    assert line["encoding"]["detail"]["field"] == "segment"
    assert views.live_frames(consumption, None, [])[0]["segment"].eq(0).all()


def test_dashboard_views_axes_name_units_and_timezone(client):
    start = NOW - dt.timedelta(hours=3)
    actual, predicted, marks = views.live_frames(
        client.consumption(A, start, NOW, "minute"), client.forecast(A), []
    )
    live = views.live_chart(actual, predicted, marks).to_dict()
    month = views.month_chart(views.month_frame(client.monthly(A, "2007-04"), 0.25)).to_dict()

    encodings = [layer["encoding"] for layer in live["layer"]]
    assert {e["x"]["title"] for e in encodings} == {"time (UTC)"}
    assert {e["x"]["scale"]["type"] for e in encodings} == {"utc"}
    assert "power (kW)" in {e["y"].get("title") for e in encodings}
    assert month["layer"][0]["encoding"]["y"]["title"] == "energy per day (kWh)"
    assert month["layer"][0]["encoding"]["x"]["title"] == "day (UTC)"
    legend = month["layer"][1]["encoding"]["color"]["scale"]["domain"]
    assert {"80 % interval", "95 % interval"} <= set(legend)


def test_dashboard_views_fleet_rows(client):
    homes, accuracy = views.fleet_rows(client.households(), client.fleet_accuracy())

    assert [h["household"] for h in homes] == [A, B]
    assert accuracy[0]["horizon"] == "next interval"
    assert accuracy[0]["households"] == 2
    assert views.fleet_rows([], None) == ([], [])


def test_dashboard_process_gets_no_token(monkeypatch):
    """`wattstream run` / `serve gateway` start the dashboard without any token: visitors
    sign in with their own (even one left in the caller's environment is not passed on)."""
    started = {}

    class FakePopen:
        def __init__(self, command, *, env, stdout, stderr):
            started.update(command=command, env=env)

    monkeypatch.setenv("WATTSTREAM_API_TOKEN", "an-operator-token")
    monkeypatch.setattr(serve.subprocess, "Popen", FakePopen)

    serve.start_dashboard("http://127.0.0.1:8090", port=8501)

    assert "WATTSTREAM_API_TOKEN" not in started["env"]
    assert started["env"]["WATTSTREAM_API_URL"] == "http://127.0.0.1:8090"
    assert "viewer" in started["command"]  # no Deploy button or developer menu
