"""The gateway API tests' world (built by :mod:`testing.reliability.gateway_world`)."""

from __future__ import annotations

import pytest

from testing.reliability.gateway_world import World, build_world


@pytest.fixture
def world() -> World:
    return build_world()
