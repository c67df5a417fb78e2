"""Shared fixtures: one real moto server over HTTP per test session.

Adapter tests talk to it through boto3 exactly as production code talks to AWS; each
test deploys the real SAM template under its own stack name, so tests cannot drift
from the infrastructure and never see each other's resources.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wattstream.local.server import EmbeddedAws, client_factory, provision
from wattstream.local.stack import StackDescription, load_template

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "template.yaml"
APRIL_2007 = ROOT / "data" / "uci_household_power_consumption_2007-04.txt.gz"
FULL_UCI = ROOT.parent / "shared" / "data" / "uci_household_power_consumption.txt.gz"
REGION = "us-east-1"

_stack_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def aws() -> Iterator[EmbeddedAws]:
    """The embedded AWS endpoint (moto server on a free loopback port)."""
    with EmbeddedAws() as server:
        yield server


@pytest.fixture(scope="session")
def clients(aws: EmbeddedAws) -> Callable[[str], Any]:
    return client_factory(aws.endpoint_url, REGION)


@pytest.fixture
def deploy_stack(aws: EmbeddedAws) -> Callable[..., StackDescription]:
    """Deploy the real template (optionally extended by the test) under a fresh name."""

    def deploy(
        extend: Callable[[dict[str, Any]], None] | None = None,
        parameters: dict[str, str] | None = None,
    ) -> StackDescription:
        template = load_template(TEMPLATE)
        if extend:
            extend(template)
        return provision(
            TEMPLATE,
            endpoint_url=aws.endpoint_url,
            region=REGION,
            stack_name=f"t{next(_stack_numbers)}",
            parameters=parameters,
            template=template,
        )

    return deploy
