"""Monthly plots rendered on first request and cached; a month's accuracy served."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from aws_lambda_powertools import Logger
from fastapi.testclient import TestClient

from services.gateway.core.model import StoredMonthly
from services.gateway.core.tokens import issue_token
from services.gateway.shells.api_app import ApiDeps, create_app
from shared.monthly_plot import PNG_MAGIC
from shared.monthly_results import (
    MonthlyComponents,
    accuracy_key,
    components_key,
    rendered_plot_key,
)
from testing.reliability.gateway_fakes import MemoryObjects, MemoryStore
from testing.reliability.gateway_world import MODELS, NOW, SECRET, A, B, monthly_for

AS_OF = dt.date(2007, 4, 2)
PLOT = f"/households/{A}/monthly/2007-04/plots/components"


def components(weekly: list[float] | None = None) -> MonthlyComponents:
    days = [dt.date(2007, 3, 1) + dt.timedelta(days=i) for i in range(33)]
    return MonthlyComponents(
        household_id=A,
        as_of=AS_OF,
        title=f"{A} 2007-04",
        forecast_from=AS_OF + dt.timedelta(days=1),
        trend_dates=days,
        trend=[30.0 + i / 10 for i in range(len(days))],
        observed_dates=days[:-1],
        observed=[29.0 + (i % 7) for i in range(len(days) - 1)],
        weekly=weekly if weekly is not None else [0.5, -0.2, 0.0, 0.1, -0.4, 1.0, 1.2],
        notes={"daily": "no sub-daily data", "yearly": "not fitted: 33 days"},
    )


class CountingRenderer:
    """A fake renderer that counts its calls (what a real render would cost)."""

    def __init__(self) -> None:
        self.calls: list[MonthlyComponents] = []

    def __call__(self, data: MonthlyComponents) -> bytes:
        self.calls.append(data)
        return PNG_MAGIC + f"render {len(self.calls)}".encode()


def client_for(deps: ApiDeps) -> TestClient:
    return TestClient(create_app(deps), raise_server_exceptions=False)


def headers(household: str = A) -> dict[str, str]:
    token = issue_token(SECRET, households=[household], ttl_s=3600, now=NOW.timestamp())
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def objects() -> MemoryObjects:
    return MemoryObjects({(MODELS, components_key(A, AS_OF)): _data(components())})


def _data(document: MonthlyComponents) -> bytes:
    return document.model_dump_json().encode()


def deps_with(objects: MemoryObjects, **overrides: object) -> ApiDeps:
    store = MemoryStore()
    forecast = monthly_for(A).model_copy(
        update={"plot_keys": {"components": components_key(A, AS_OF)}}
    )
    store.put_monthly(StoredMonthly(forecast, MODELS, "results/monthly/a.json"))
    deps = ApiDeps(
        store=store,
        token_secret=SECRET,
        objects=objects,
        models_bucket=MODELS,
        plot_cache=objects,
        clock=lambda: NOW,
        logger=Logger(service="gateway-test"),
    )
    return dataclasses.replace(deps, **overrides)  # type: ignore[arg-type]


def test_monthly_plot_is_rendered_on_first_request_then_served_from_the_cache(objects):
    renderer = CountingRenderer()
    client = client_for(deps_with(objects, render_plot=renderer))

    first = client.get(PLOT, headers=headers())
    second = client.get(PLOT, headers=headers())

    assert first.status_code == second.status_code == 200
    assert first.headers["content-type"] == "image/png"
    assert first.content == second.content == PNG_MAGIC + b"render 1"
    assert len(renderer.calls) == 1  # rendered once, on request
    assert renderer.calls[0] == components()
    cached = rendered_plot_key(components_key(A, AS_OF), _data(components()))
    assert objects.writes == [(MODELS, cached)]


def test_monthly_plot_of_recomputed_data_is_rendered_again(objects):
    renderer = CountingRenderer()
    client = client_for(deps_with(objects, render_plot=renderer))
    client.get(PLOT, headers=headers())

    corrected = components(weekly=[0.0] * 7)  # the forecast was recomputed in place
    objects.objects[(MODELS, components_key(A, AS_OF))] = _data(corrected)
    reply = client.get(PLOT, headers=headers())

    assert reply.content == PNG_MAGIC + b"render 2"
    assert renderer.calls[-1] == corrected


def test_monthly_plot_without_a_cache_still_renders(objects):
    renderer = CountingRenderer()
    client = client_for(deps_with(objects, render_plot=renderer, plot_cache=None))

    replies = [client.get(PLOT, headers=headers()) for _ in range(2)]

    assert [r.status_code for r in replies] == [200, 200]
    assert len(renderer.calls) == 2


def test_monthly_plot_default_renderer_draws_a_real_png(objects):
    client = client_for(deps_with(objects))

    reply = client.get(PLOT, headers=headers())

    assert reply.status_code == 200
    assert reply.content.startswith(PNG_MAGIC)
    assert len(reply.content) > 5_000


def test_monthly_plot_unreadable_data_is_a_clear_error(objects):
    objects.objects[(MODELS, components_key(A, AS_OF))] = b"{not json"
    client = client_for(deps_with(objects, render_plot=CountingRenderer()))

    reply = client.get(PLOT, headers=headers())

    assert reply.status_code == 500
    assert reply.json()["error"]["code"] == "bad_plot_data"


# ---------------------------------------------------------------------------- accuracy


def test_monthly_accuracy_lists_scored_months_with_pooled_figures():
    from testing.reliability.gateway_world import build_world

    world = build_world()

    body = world.client.get(f"/households/{A}/monthly/accuracy", headers=world.headers(A)).json()

    assert [m["month"] for m in body["months"]] == ["2007-03"]
    assert [f["as_of"] for f in body["months"][0]["forecasts"]] == ["2007-03-10", "2007-03-20"]
    assert body["forecasts"] == 2
    assert body["mape"] == pytest.approx(5.0)  # 8 % and 2 %
    assert body["coverage_80"] == pytest.approx(0.5)
    assert body["coverage_95"] == pytest.approx(1.0)


def test_monthly_accuracy_month_filter_and_404_without_a_scored_month():
    from testing.reliability.gateway_world import build_world

    world = build_world()

    other_month = world.client.get(
        f"/households/{A}/monthly/accuracy", params={"month": "2007-02"}, headers=world.headers(A)
    )
    nobody = world.client.get(
        "/households/uci-0009/monthly/accuracy", headers=world.headers("uci-0009")
    )

    assert other_month.status_code == 404
    assert nobody.status_code == 404
    assert nobody.json()["error"]["code"] == "no_monthly_accuracy"


def test_monthly_accuracy_without_a_models_bucket_is_501(objects):
    objects.objects[(MODELS, accuracy_key(B))] = b"{}"
    client = client_for(deps_with(objects, models_bucket=None))

    reply = client.get(f"/households/{B}/monthly/accuracy", headers=headers(B))

    assert reply.status_code == 501
