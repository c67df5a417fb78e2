"""The Lambda's composition root serves energy-only meters with the shipped fleet model."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.realtime.model.fleet_model import FleetModel, shipped_fleet_bundle
from services.realtime.shells.lambda_handler import deps_from_environment
from shared.streams.kinesis import KinesisPublisher


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


def test_realtime_composition_root_reads_the_given_environment_not_os_environ(
    monkeypatch: pytest.MonkeyPatch, tiny_bundle: Path
):
    for name in ("STATE_TABLE", "FORECASTS_STREAM_NAME", "MODEL_BUNDLE", "AWS_ENDPOINT_URL"):
        monkeypatch.setenv(name, "http://poisoned.invalid:1")
    monkeypatch.setenv("MODEL_BACKEND", "sagemaker")  # would need an endpoint name

    deps = deps_from_environment(
        {
            "STATE_TABLE": "state-from-mapping",
            "FORECASTS_STREAM_NAME": "forecasts-from-mapping",
            "MODEL_BACKEND": "litert",
            "MODEL_BUNDLE": str(tiny_bundle),
            "AWS_ENDPOINT_URL": "http://mapping.invalid:4566",
            "AWS_REGION": "eu-west-1",
            "POWERTOOLS_SERVICE_NAME": "realtime-from-mapping",
        }
    )

    assert deps.store.table_name == "state-from-mapping"
    assert deps.publisher.stream_name == "forecasts-from-mapping"
    assert deps.publisher._client.meta.endpoint_url == "http://mapping.invalid:4566"
    assert deps.logger.service == "realtime-from-mapping"


def test_realtime_composition_root_publishes_a_households_forecasts_together(environment):
    publisher = deps_from_environment().publisher

    # forecast consumers supersede by issue time, so one request may carry a household's
    # several forecasts (bench fleet-day: they stay together in the gateway's batches)
    assert isinstance(publisher, KinesisPublisher)
    assert publisher.preserve_order is False
