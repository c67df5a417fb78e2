"""The gateway API tests' world (built by :mod:`wattstream.reliability.gateway_world`)."""

from __future__ import annotations

import pytest

from wattstream.reliability.gateway_world import World, build_world


@pytest.fixture
def world() -> World:
    return build_world()
