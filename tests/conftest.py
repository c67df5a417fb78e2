"""Shared fixtures: one real moto server over HTTP per test session.

Adapter tests talk to it through boto3 exactly as production code talks to AWS; each
test deploys the real SAM template under its own stack name, so tests cannot drift
from the infrastructure and never see each other's resources.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from testing.entries import reset_lambda_entries
from wattstream.hosting.template import StackDescription, load_template
from wattstream.local.server import EmbeddedAws, client_factory, provision

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "template.yaml"
APRIL_2007 = ROOT / "data" / "uci_household_power_consumption_2007-04.txt.gz"
#: The full real data sets (not shipped): ../shared/data, or WATTSTREAM_DATA_DIR.
DATA_DIR = Path(os.environ.get("WATTSTREAM_DATA_DIR", ROOT.parent / "shared" / "data"))
FULL_UCI = DATA_DIR / "uci_household_power_consumption.txt.gz"
REGION = "us-east-1"

_stack_numbers = itertools.count(1)

# Timing is not correctness: on a loaded machine (CI, the other core busy) a slow example
# must not fail a test. Every Hypothesis test inherits this profile; a test's own
# @settings only adds to it. HYPOTHESIS_PROFILE may name another registered profile.
settings.register_profile(
    "wattstream",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "wattstream"))


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
        # Shell entry points build their deps once per process from os.environ (a Lambda
        # sandbox); a new stack must not reach deps built for an older one.
        reset_lambda_entries()
        return provision(
            TEMPLATE,
            endpoint_url=aws.endpoint_url,
            region=REGION,
            stack_name=f"t{next(_stack_numbers)}",
            parameters=parameters,
            template=template,
        )

    return deploy


@pytest.fixture(scope="session")
def full_uci() -> Path:
    """The complete UCI file; a slow test without it is skipped, loudly, not passed."""
    if not FULL_UCI.exists():
        pytest.skip(f"full UCI file not found at {FULL_UCI} (set WATTSTREAM_DATA_DIR)")
    return FULL_UCI


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A bare ``pytest`` stays fast: full-data tests run only when ``-m`` selects them."""
    if config.option.markexpr:
        return
    skip = pytest.mark.skip(reason="full-data test: run with -m slow (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
