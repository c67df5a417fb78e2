"""Fuzzing the published OpenAPI schema (schemathesis): no request ever gets a 5xx.

Valid and invalid requests (positive and negative generation) are derived from
``/openapi.json`` for every route, sent with an operator token (so they reach the
handlers and the stores) and with a household token (so they reach the 403 paths).
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from testing.reliability.gateway_world import A, build_world

WORLD = build_world()
schema = schemathesis.openapi.from_asgi("/openapi.json", WORLD.app)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])

OPERATOR = {"Authorization": f"Bearer {WORLD.token(operator=True)}"}
HOUSEHOLD = {"Authorization": f"Bearer {WORLD.token(A)}"}
FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


@schema.parametrize()
@FUZZ
def test_api_fuzz_operator_no_server_error(case):
    response = case.call(headers=OPERATOR)

    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])


@schema.parametrize()
@FUZZ
def test_api_fuzz_household_no_server_error(case):
    response = case.call(headers=HOUSEHOLD)

    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
