"""The Lambda's composition root serves energy-only meters with the shipped fleet model."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.realtime.model.fleet_model import FleetModel, shipped_fleet_bundle
from services.realtime.shells.lambda_handler import deps_from_environment


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tiny_bundle: Path) -> None:
    for name, value in {
        "STATE_TABLE": "state",
        "FORECASTS_STREAM_NAME": "forecasts",
        "MODEL_BACKEND": "litert",
        "MODEL_BUNDLE": str(tiny_bundle),
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FLEET_MODEL_BUNDLE", raising=False)


def test_realtime_composition_root_loads_the_shipped_fleet_model(environment):
    shipped = shipped_fleet_bundle()
    if shipped is None:
        pytest.skip("no fleet bundle shipped yet")

    config = deps_from_environment().stream_config

    assert isinstance(config.energy_model, FleetModel)
    assert config.energy_model.spec.version == shipped.name


def test_realtime_composition_root_fleet_bundle_from_the_environment(
    environment, monkeypatch, tmp_path
):
    monkeypatch.setenv("FLEET_MODEL_BUNDLE", str(tmp_path / "missing"))

    with pytest.raises(FileNotFoundError):
        deps_from_environment()
