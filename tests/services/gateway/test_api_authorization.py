"""No cross-household read on ANY route: 401 without a valid token, 403 for another's data.

The route table below must list every route of the app (a test checks it), so a new route
cannot ship without its authorization tests.
"""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from services.gateway.core.tokens import issue_token
from testing.reliability.gateway_world import NOW, SECRET, A, B, build_world

#: (method, path with {household_id} = the household asked for, scope)
ROUTES = [
    ("GET", "/households", "any"),
    ("GET", "/households/{household_id}/consumption", "household"),
    ("GET", "/households/{household_id}/forecast", "household"),
    ("GET", "/households/{household_id}/anomalies", "household"),
    ("GET", "/households/{household_id}/accuracy", "household"),
    ("GET", "/households/{household_id}/forecasts/history", "household"),
    ("GET", "/households/{household_id}/monthly", "household"),
    ("GET", "/households/{household_id}/monthly/2007-04/plots/components", "household"),
    ("GET", "/households/{household_id}/monthly/accuracy", "household"),
    ("GET", "/health/pipeline", "operator"),
    ("GET", "/fleet/accuracy", "operator"),
    ("POST", "/pipeline/replay", "operator"),
    ("GET", "/pipeline/replay", "operator"),
    ("POST", "/pipeline/uploads?name=april.txt&utc_offset=uci", "operator"),
    ("GET", "/pipeline/uploads?key=uploads/april.txt", "operator"),
]
PUBLIC = {("GET", "/health")}
PROTECTED = [(m, p) for m, p, _ in ROUTES]
HOUSEHOLD_ROUTES = [(m, p) for m, p, scope in ROUTES if scope == "household"]
OPERATOR_ROUTES = [(m, p) for m, p, scope in ROUTES if scope == "operator"]


@pytest.fixture(scope="module")
def world():
    return build_world()


def _call(world, method, path, household=B, token=None, raw_header=None):
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if raw_header is not None:
        headers["Authorization"] = raw_header
    url = path.replace("{household_id}", household)
    if path == "/pipeline/replay" and method == "POST":
        return world.client.request(method, url, headers=headers, json={"households": 2})
    return world.client.request(method, url, headers=headers, content=b"data")


def _template(path: str) -> str:
    return path.split("?")[0].replace("/2007-04/plots/components", "/{month}/plots/{name}")


def test_authorization_route_table_covers_every_route(world):
    routes = {
        (method, route.path)
        for route in world.app.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }

    assert routes == {(m, _template(p)) for m, p in PROTECTED} | PUBLIC


@pytest.mark.parametrize(("method", "path"), HOUSEHOLD_ROUTES)
def test_authorization_household_token_cannot_read_another_household(world, method, path):
    reply = _call(world, method, path, household=B, token=world.token(A))

    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "forbidden"
    assert B in reply.json()["error"]["reason"]


@pytest.mark.parametrize(("method", "path"), HOUSEHOLD_ROUTES)
def test_authorization_household_token_reads_its_own(world, method, path):
    reply = _call(world, method, path, household=B, token=world.token(B))

    assert reply.status_code == 200


@pytest.mark.parametrize(("method", "path"), HOUSEHOLD_ROUTES)
def test_authorization_multi_household_token_reads_only_those(world, method, path):
    token = world.token(A, "uci-0042")

    assert _call(world, method, path, household=A, token=token).status_code == 200
    assert _call(world, method, path, household=B, token=token).status_code == 403


@pytest.mark.parametrize(("method", "path"), OPERATOR_ROUTES)
def test_authorization_operator_routes_refuse_household_tokens(world, method, path):
    reply = _call(world, method, path, token=world.token(A, B))

    assert reply.status_code == 403


@pytest.mark.parametrize(("method", "path"), OPERATOR_ROUTES + HOUSEHOLD_ROUTES)
def test_authorization_operator_reads_everything(world, method, path):
    reply = _call(world, method, path, token=world.token(operator=True))

    assert reply.status_code in (200, 202)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    ("case", "header", "code"),
    [
        ("missing", None, "token_missing"),
        ("not bearer", "Basic dXNlcjpwYXNz", "token_missing"),
        ("garbage", "Bearer garbage", "token_malformed"),
        (
            "forged",
            "Bearer " + issue_token("another-secret-" * 3, operator=True, ttl_s=60, now=0),
            "token_bad_signature",
        ),
        (
            "expired",
            "Bearer " + issue_token(SECRET, operator=True, ttl_s=60, now=NOW.timestamp() - 61),
            "token_expired",
        ),
    ],
)
def test_authorization_without_a_valid_token_is_401(world, method, path, case, header, code):
    reply = _call(world, method, path, raw_header=header)

    assert reply.status_code == 401, case
    assert reply.json()["error"]["code"] == code
    assert reply.headers["www-authenticate"] == "Bearer"


def test_authorization_household_list_never_shows_other_households(world):
    body = _call(world, "GET", "/households", token=world.token(A)).json()

    assert {h["household_id"] for h in body["households"]} == {A}
