"""The gateway API on fakes: what each route answers, and its error bodies."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from services.gateway.core.model import ConsumerProgress
from services.gateway.ports import ReplayBusy
from services.gateway.shells.api_app import create_app
from testing.reliability.gateway_world import NOW, PNG, A, B


def test_api_health_needs_no_token(world):
    assert world.client.get("/health").json() == {"status": "ok"}


def test_api_openapi_is_published(world):
    schema = world.client.get("/openapi.json").json()

    assert "/households/{household_id}/consumption" in schema["paths"]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_api_households_operator_sees_all_household_sees_its_own(world):
    everyone = world.client.get("/households", headers=world.headers(operator=True)).json()
    own = world.client.get("/households", headers=world.headers(A)).json()

    assert [h["household_id"] for h in everyone["households"]] == [A, B]
    assert [h["household_id"] for h in own["households"]] == [A]
    assert own["households"][0]["last_reading_at"] == "2007-04-02T11:59:00Z"


def test_api_consumption_hourly(world):
    reply = world.client.get(
        f"/households/{A}/consumption",
        params={"start": "2007-04-02T00:00:00Z", "end": "2007-04-02T03:00:00Z"},
        headers=world.headers(A),
    )

    assert reply.status_code == 200
    body = reply.json()
    assert body["resolution"] == "hour"
    assert [p["start"] for p in body["points"]] == [
        "2007-04-02T00:00:00Z",
        "2007-04-02T01:00:00Z",
        "2007-04-02T02:00:00Z",
    ]
    assert body["points"][0] == {
        "start": "2007-04-02T00:00:00Z",
        "kwh": pytest.approx(1.0),
        "mean_kw": 1.0,
        "min_kw": 1.0,
        "max_kw": 1.0,
        "minutes": 60,
    }
    assert body["total_kwh"] == pytest.approx(3.0)


def test_api_consumption_minutes_default_range_ends_now(world):
    body = world.client.get(
        f"/households/{B}/consumption",
        params={"resolution": "minute"},
        headers=world.headers(B),
    ).json()

    assert body["end"] == "2007-04-02T12:00:00Z"
    assert len(body["points"]) == 6 * 60  # the default span of minute resolution: 6 h
    assert body["points"][0]["mean_kw"] == 2.0


def test_api_consumption_daily_across_items(world):
    body = world.client.get(
        f"/households/{A}/consumption",
        params={"resolution": "day", "start": "2007-03-31T00:00:00Z"},
        headers=world.headers(A),
    ).json()

    assert [p["minutes"] for p in body["points"]] == [1440, 720]


def test_api_consumption_unknown_household_is_empty_for_operator(world):
    body = world.client.get(
        "/households/nobody/consumption", headers=world.headers(operator=True)
    ).json()

    assert body["points"] == []
    assert body["total_kwh"] == 0


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"resolution": "minute", "start": "2007-03-01T00:00:00Z"}, "range_too_long"),
        ({"resolution": "second"}, "invalid_request"),
        ({"start": "yesterday"}, "invalid_request"),
        ({"start": "2007-04-02T12:00:00Z"}, "empty_range"),
        ({"start": "0001-01-01T00:00:00+05:00"}, "out_of_range"),
    ],
)
def test_api_consumption_bad_query_is_a_clear_422(world, params, code):
    reply = world.client.get(
        f"/households/{A}/consumption", params=params, headers=world.headers(A)
    )

    assert reply.status_code == 422
    assert reply.json()["error"]["code"] == code
    assert reply.json()["error"]["reason"]


def test_api_malformed_household_id_is_422(world):
    reply = world.client.get("/households/bad%20id/forecast", headers=world.headers(operator=True))

    assert reply.status_code == 422
    assert reply.json()["error"]["field"] == "path.household_id"


def test_api_forecast_latest_with_interval(world):
    body = world.client.get(f"/households/{A}/forecast", headers=world.headers(A)).json()

    assert body["age_s"] == 0.0  # issued at the latest reading: event time, not the wall
    assert body["clock"] == "event_time"
    assert body["last_reading_at"] == body["forecast"]["issued_at"]
    point = body["forecast"]["points"][0]
    assert point["lower_kw"] <= point["value_kw"] <= point["upper_kw"]


def test_api_consumption_default_window_ends_at_the_latest_reading(world):
    """One clock: with no end given, the window ends at the household's latest reading,
    however far a replay runs ahead of (or behind) the wall clock, and says so."""
    given = world.client.get(
        f"/households/{A}/consumption",
        params={"end": "2030-01-01T00:00:00Z"},
        headers=world.headers(A),
    ).json()
    default = world.client.get(f"/households/{A}/consumption", headers=world.headers(A)).json()

    assert given["clock"] == "wall"
    assert default["clock"] == "event_time"
    assert default["points"]
    assert default["points"][-1]["start"] < default["end"]


def test_api_forecast_missing_is_404(world):
    reply = world.client.get("/households/uci-0003/forecast", headers=world.headers("uci-0003"))

    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "no_forecast"


def test_api_anomalies_in_range(world):
    body = world.client.get(f"/households/{A}/anomalies", headers=world.headers(A)).json()
    before = world.client.get(
        f"/households/{A}/anomalies",
        params={"end": "2007-04-02T09:00:00Z"},
        headers=world.headers(A),
    ).json()

    assert [a["timestamp"] for a in body["anomalies"]] == ["2007-04-02T10:00:00Z"]
    [mark] = body["anomalies"]
    assert (mark["kind"], mark["kwh"], mark["duration_s"]) == ("excess", 1.5, 3600)
    assert mark["started_at"] == "2007-04-02T09:00:00Z"
    assert before["anomalies"] == []


def test_api_monthly_with_plot_links_that_stream_the_png(world):
    body = world.client.get(
        f"/households/{A}/monthly", params={"month": "2007-04"}, headers=world.headers(A)
    ).json()

    assert body["forecast"]["month_total_kwh"] == 900.0
    link = body["plots"]["components"]
    assert link == f"/households/{A}/monthly/2007-04/plots/components"
    plot = world.client.get(link, headers=world.headers(A))
    assert plot.status_code == 200
    assert plot.headers["content-type"] == "image/png"
    assert plot.content == PNG


def test_api_monthly_defaults_to_this_month_and_404s_without_result(world):
    reply = world.client.get(f"/households/{A}/monthly", headers=world.headers(A))
    assert reply.status_code == 200  # NOW is in April 2007

    other = world.client.get(
        f"/households/{A}/monthly", params={"month": "2007-05"}, headers=world.headers(A)
    )
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "no_monthly"


def test_api_pipeline_health_lag_throughput_and_queues(world):
    world.store.record_progress(
        ConsumerProgress(
            consumer="readings",
            last_arrival_at=NOW - dt.timedelta(seconds=3),
            last_event_at=NOW - dt.timedelta(minutes=1),
            processed_at=NOW - dt.timedelta(seconds=1),
            records=600,
        )
    )

    body = world.client.get("/health/pipeline", headers=world.headers(operator=True)).json()

    (readings,) = body["consumers"]
    assert readings["lag_s"] == 2.0
    assert readings["idle_s"] == 1.0
    assert readings["records_per_s"] == 2.0  # 600 records in the 5-minute window
    assert body["queues"] == {"QuarantineQueue": 2, "ReadingsFailureQueue": 0}


def test_api_replay_starts_through_the_port(world):
    reply = world.client.post(
        "/pipeline/replay",
        json={"households": 3, "speed": "max"},
        headers=world.headers(operator=True),
    )

    assert reply.status_code == 202
    assert world.replay.started[0].request.households == 3
    jobs = world.client.get("/pipeline/replay", headers=world.headers(operator=True)).json()
    assert jobs["jobs"][0]["state"] == "finished"


def test_api_replay_refuses_bad_request(world):
    reply = world.client.post(
        "/pipeline/replay", json={"households": 0}, headers=world.headers(operator=True)
    )

    assert reply.status_code == 422


def test_api_upload_puts_the_file_and_reports_when_ingest_is_done(world):
    headers = {**world.headers(operator=True), "Content-Type": "application/octet-stream"}
    reply = world.client.post(
        "/pipeline/uploads",
        params={"name": "april.txt.gz", "household": "uci-0009", "utc_offset": "uci"},
        content=b"gzip bytes",
        headers=headers,
    )

    assert reply.status_code == 202
    key = reply.json()["key"]
    assert key == "uploads/uci-0009/april.txt.gz"
    assert world.uploads.objects[key] == b"gzip bytes"
    assert world.uploads.metadata[key] == {"utc-offset": "+01:00"}
    status = world.client.get("/pipeline/uploads", params={"key": key}, headers=headers).json()
    assert status["state"] == "pending"
    world.uploads.reports[f"reports/{key}.json"] = {"status": "done", "accepted": 10}
    status = world.client.get("/pipeline/uploads", params={"key": key}, headers=headers).json()
    assert status["state"] == "done"
    assert status["report"]["accepted"] == 10


@pytest.mark.parametrize(
    ("offset", "code"), [(None, "missing_utc_offset"), ("CET", "bad_utc_offset")]
)
def test_api_upload_needs_the_utc_offset_of_naive_uci_times(world, offset, code):
    headers = {**world.headers(operator=True), "Content-Type": "application/octet-stream"}
    params = {"name": "april.txt", **({"utc_offset": offset} if offset else {})}

    reply = world.client.post("/pipeline/uploads", params=params, content=b"x", headers=headers)

    assert reply.status_code == 422
    assert reply.json()["error"]["code"] == code
    assert world.uploads.objects == {}


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [("../x.txt", b"x", 422), ("x.exe", b"x", 422), ("x.txt", b"", 422)],
)
def test_api_upload_refuses_bad_names_and_empty_bodies(world, name, body, status):
    reply = world.client.post(
        "/pipeline/uploads",
        params={"name": name},
        content=body,
        headers=world.headers(operator=True),
    )

    assert reply.status_code == status
    assert world.uploads.objects == {}


def test_api_unknown_route_is_404_with_error_body(world):
    reply = world.client.get("/nope")

    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "not_found"


def test_api_pipeline_controls_absent_are_501_and_busy_is_409(world):
    bare = create_app(replace(world.app.state.deps, replay=None, uploads=None))
    client = TestClient(bare, raise_server_exceptions=False)
    operator = world.headers(operator=True)

    assert client.post("/pipeline/replay", json={}, headers=operator).status_code == 501
    assert client.get("/pipeline/replay", headers=operator).status_code == 501
    reply = client.post("/pipeline/uploads", params={"name": "a.txt"}, headers=operator)
    assert reply.status_code == 501
    assert reply.json()["error"]["code"] == "not_configured"

    class Busy:
        def start(self, request):
            raise ReplayBusy("a replay is already running")

    busy = TestClient(create_app(replace(world.app.state.deps, replay=Busy())))
    reply = busy.post("/pipeline/replay", json={}, headers=operator)
    assert reply.status_code == 409
    assert reply.json()["error"]["code"] == "replay_running"


def test_api_accuracy_rolling_metrics_per_horizon_with_definitions(world):
    body = world.client.get(f"/households/{A}/accuracy", headers=world.headers(A)).json()

    assert (body["window_start"], body["window_end"]) == (
        "2007-03-26T12:00:00Z",
        "2007-04-02T12:00:00Z",
    )
    nxt = body["horizons"]["next"]
    assert nxt["pairs"] == 48  # a day of half-hourly forecasts, 10 % high
    assert nxt["mae_kw"] == pytest.approx(0.1)
    assert nxt["bias_kw"] == pytest.approx(0.1)
    assert nxt["coverage"] == 1.0
    assert nxt["naive_pairs"] == 24  # readings start 36 h back: half have yesterday
    assert nxt["mase"] is None  # flat readings: seasonal naive is perfect, MASE undefined
    assert "first step" in nxt["description"]
    assert body["horizons"]["day_ahead"]["pairs"] == 0
    assert set(body["definitions"]) >= {"mase", "coverage", "window", "actual"}
    assert body["resolutions_s"] == [1800]
    assert (body["first_scored_at"], body["last_scored_at"]) == (
        "2007-04-01T12:00:00Z",
        "2007-04-02T12:00:00Z",
    )


def test_api_accuracy_missing_is_404(world):
    reply = world.client.get("/households/uci-0404/accuracy", headers=world.headers(operator=True))

    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "no_accuracy"


def test_api_fleet_accuracy_pools_households(world):
    body = world.client.get("/fleet/accuracy", headers=world.headers(operator=True)).json()

    assert (body["households"], body["stale_households"]) == (2, 0)
    pooled = body["horizons"]["next"]["pooled"]
    assert pooled["pairs"] == 96
    assert pooled["mae_kw"] == pytest.approx((0.1 + 0.2) / 2)  # A at 1 kW, B at 2 kW
    assert body["horizons"]["next"]["households"] == 2
    assert body["horizons"]["day_ahead"]["households"] == 0


def test_api_forecast_history_against_actuals(world):
    reply = world.client.get(
        f"/households/{B}/forecasts/history",
        params={"start": "2007-04-02T10:00:00Z", "end": "2007-04-02T12:00:00Z"},
        headers=world.headers(B),
    )

    assert reply.status_code == 200
    body = reply.json()
    assert body["horizon"] == "next"
    assert [p["start"] for p in body["points"]] == [
        f"2007-04-02T{h}:{m}:00Z" for h in ("10", "11") for m in ("00", "30")
    ]
    assert body["points"][0] == {
        "start": "2007-04-02T10:00:00Z",
        "end": "2007-04-02T10:30:00Z",
        "issued_at": "2007-04-02T10:00:00Z",
        "resolution_s": 1800,
        "value_kw": pytest.approx(2.2),
        "lower_kw": 1.6,
        "upper_kw": 2.4,
        "actual_kw": 2.0,
        "seasonal_naive_kw": 2.0,
        "inside_interval": True,
    }


def test_api_forecast_history_defaults_to_the_last_day_and_other_horizon(world):
    default = world.client.get(
        f"/households/{A}/forecasts/history", headers=world.headers(A)
    ).json()
    day_ahead = world.client.get(
        f"/households/{A}/forecasts/history",
        params={"horizon": "day_ahead"},
        headers=world.headers(A),
    ).json()

    assert (default["start"], default["end"]) == ("2007-04-01T12:00:00Z", "2007-04-02T12:00:00Z")
    assert len(default["points"]) == 48
    assert day_ahead["points"] == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"start": "2007-03-01T00:00:00Z", "end": "2007-04-02T00:00:00Z"}, "range_too_long"),
        ({"start": "2007-04-02T00:00:00Z", "end": "2007-04-01T00:00:00Z"}, "empty_range"),
        ({"horizon": "week_ahead"}, "invalid_request"),
    ],
)
def test_api_forecast_history_bad_query_is_422(world, params, code):
    reply = world.client.get(
        f"/households/{A}/forecasts/history", params=params, headers=world.headers(A)
    )

    assert reply.status_code == 422
    assert reply.json()["error"]["code"] == code


def test_api_every_answer_says_nosniff_and_errors_echo_no_markup(world):
    script = "<script>alert(1)</script>"
    answers = [
        world.client.get("/health"),
        world.client.get("/households", headers=world.headers(operator=True)),
        world.client.get("/households"),  # 401
        world.client.get(f"/households/{script}/consumption", headers=world.headers(A)),
        world.client.get(
            f"/households/{A}/consumption",
            params={"resolution": script},
            headers=world.headers(A),
        ),
        world.client.get(f"/nope{script}"),
    ]

    assert [a.status_code for a in answers][:3] == [200, 200, 401]
    assert all(a.status_code >= 400 for a in answers[2:])
    assert all(a.headers["x-content-type-options"] == "nosniff" for a in answers)
    for answer in answers[2:]:
        assert not set(b"<>") & set(answer.content)
        assert answer.headers["cache-control"] == "no-store"
