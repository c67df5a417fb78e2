"""Training, export and serving of the fleet model on tiny synthetic data (seeded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.realtime.core.stream import Delivery, StreamConfig, step
from services.realtime.model.fleet_data import EnergyGrid
from services.realtime.model.fleet_features import england_bank_holidays
from services.realtime.model.fleet_model import FleetModel, read_fleet_spec
from tests.services.realtime.fakes import PersistenceModel
from tests.services.realtime.test_stream import T0, energy_only

START_S = 1_356_998_400  # 2013-01-01


def _grid(households: int = 4, days: int = 20) -> EnergyGrid:
    rng = np.random.default_rng(3)
    slot = np.arange(days * 48) % 48
    kw = np.stack(
        [
            (0.2 + 0.1 * h) * (1 + 2 * ((slot >= 34) & (slot < 44))) + rng.gamma(1, 0.05, len(slot))
            for h in range(households)
        ]
    )
    kw[0, 100:110] = np.nan  # a gap
    return EnergyGrid(tuple(f"h{h}" for h in range(households)), START_S, kw)


def _config():  # type: ignore[no-untyped-def]
    from services.realtime.model.fleet_training import FleetConfig

    return FleetConfig(
        hidden=(16,), epochs=2, batch_size=32, windows_per_household=40, validation_days=3
    )


def _train():  # type: ignore[no-untyped-def]
    from services.realtime.model.fleet_training import train_fleet_model

    return train_fleet_model(_grid(), england_bank_holidays([2013]), config=_config())


@pytest.fixture(scope="module")
def fleet_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from services.realtime.model.fleet_training import write_fleet_bundle

    trained = _train()
    return write_fleet_bundle(trained, tmp_path_factory.mktemp("fleet") / trained.spec.version)


def test_train_fleet_model_same_seed_same_weights():
    first, second = _train(), _train()

    assert first.spec.version == second.spec.version  # named by the weights' hash
    for a, b in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert first.spec.scale_low == second.spec.scale_low


def test_train_fleet_model_refuses_too_little_data():
    from services.realtime.model.fleet_training import train_fleet_model

    with pytest.raises(ValueError, match="not enough data"):
        train_fleet_model(_grid(days=10), frozenset(), config=_config())


def test_fleet_bundle_litert_serves_calibrated_quantiles(fleet_bundle: Path):
    model = FleetModel.from_bundle(fleet_bundle)
    grid = _grid()
    history = grid.kw[:, -336:]
    issue = np.full(len(history), START_S + 20 * 86_400.0)

    quantiles = model.forecast(history, issue)

    spec = read_fleet_spec(fleet_bundle)
    assert quantiles.shape == (4, 48, 3)
    assert np.isfinite(quantiles).all()
    assert (np.diff(quantiles, axis=-1) >= 0).all()  # lower <= median <= upper
    assert len(spec.scale_low) == len(spec.scale_high) == 48  # one per horizon step
    assert min(spec.scale_low) > 0
    assert min(spec.scale_high) > 0
    assert (fleet_bundle / "model.keras").is_file()


def test_fleet_model_port_serves_an_energy_only_batch_without_fallback(fleet_bundle: Path, spec):
    model = FleetModel.from_bundle(fleet_bundle)
    config = StreamConfig(spec, energy_model=model)
    deliveries = [
        Delivery(energy_only("MAC000002", 1), 1),  # exactly its first complete day...
        Delivery(energy_only("MAC000002", 1, start_us=T0 + 86_400_000_000).slice(0, 2), 2),
        Delivery(energy_only("MAC000003", 3), 3),
    ]

    result = step({}, deliveries, PersistenceModel(spec), config)

    forecasts = result.to_forecasts()
    newcomer = [f for f in forecasts if f.household_id == "MAC000002"]
    assert len(newcomer) == 2  # ...is enough: forecasts from the first complete day on
    assert all(f.fallback_reason is None for f in forecasts)
    assert {f.model_version for f in forecasts} == {model.spec.version}
    assert {len(f.points) for f in forecasts} == {48}
    assert result.stats.fallback_windows == 0
    assert all(p.lower_kw <= p.value_kw <= p.upper_kw for f in forecasts for p in f.points)


def test_fleet_model_rejects_windows_of_another_shape(fleet_bundle: Path):
    model = FleetModel.from_bundle(fleet_bundle)

    with pytest.raises(ValueError, match="336"):
        model.predict(np.zeros((2, 48, 2)))


def test_train_fleet_model_calibrates_on_households_left_out_of_fitting():
    from dataclasses import replace

    from services.realtime.model.fleet_training import train_fleet_model

    config = replace(_config(), calibration_households=0.25, epochs=1)

    trained = train_fleet_model(_grid(), frozenset(), config=config)

    assert trained.metrics["calibration_households"] == 1
    assert trained.metrics["households"] == 3  # fitted on the other three
    # its windows span the whole training period, not only the validation slice
    assert trained.metrics["calibration_windows"] == len(range(336, 20 * 48 - 48 + 1, 11))


def test_fleet_spec_reads_one_scale_for_every_step_and_refuses_a_wrong_count():
    from pydantic import ValidationError

    from services.realtime.model.fleet_model import FleetSpec

    old = FleetSpec.model_validate_json('{"version": "v", "scale_low": 1.5, "scale_high": 2}')

    assert old.scale_low == (1.5,)
    assert old.scale_high == (2.0,)
    with pytest.raises(ValidationError, match="scale_low"):
        FleetSpec(version="v", scale_low=(1.0, 2.0))


def test_fleet_model_widens_each_step_by_its_own_scale():
    from services.realtime.model.fleet_model import FleetSpec

    model = FleetModel.__new__(FleetModel)
    model.fleet = FleetSpec(
        version="v", scale_low=(1.0,) * 47 + (2.0,), scale_high=(3.0,) + (1.0,) * 47
    )
    raw = np.tile([-0.1, 0.0, 0.1], (1, 48, 1))

    kw = model.to_kw(raw, np.ones((1, 48)), np.array([2.0]))

    np.testing.assert_allclose(kw[0, 0], [1.8, 2.0, 2.6])  # (1 + 0.1 * 3) * 2
    np.testing.assert_allclose(kw[0, -1], [1.6, 2.0, 2.2])
    np.testing.assert_allclose(kw[0, 1], [1.8, 2.0, 2.2])


def test_fleet_model_widens_a_noisier_household_more():
    from services.realtime.model.fleet_model import FleetSpec

    model = FleetModel.__new__(FleetModel)
    model.fleet = FleetSpec(version="v", spread_power=0.5)
    raw = np.tile([-0.1, 0.0, 0.1], (2, 48, 1))

    kw = model.to_kw(raw, np.ones((2, 48)), np.ones(2), spread=np.array([0.4, 0.1]))

    np.testing.assert_allclose(kw[0, 0], [0.8, 1.0, 1.2])  # twice its raw gaps
    np.testing.assert_allclose(kw[1, 0], [0.9, 1.0, 1.1])  # spread = raw gap: unchanged
    old = FleetSpec.model_validate_json('{"version": "v"}')
    assert old.spread_power == 0.0  # a bundle without it serves its raw calibrated band


def test_choose_spread_power_evens_out_coverage_between_households():
    from services.realtime.model.fleet_training import FleetSamples, choose_spread_power

    rng = np.random.default_rng(0)
    noise = np.repeat([0.05, 0.4], 500)  # a quiet and a noisy household, same raw band
    y = rng.normal(0, 1, (1000, 48)) * noise[:, None]
    raw = np.tile([-0.2, 0.0, 0.2], (1000, 48, 1))
    samples = FleetSamples(
        np.zeros((1000, 1), np.float32),
        y.astype(np.float32),
        np.ones(1000),
        np.zeros((1000, 48)),
        np.repeat([0, 1], 500),
        noise,
    )

    power, s_low, s_high, dispersion = choose_spread_power(raw, samples, (0.1, 0.5, 0.9))

    assert power > 0  # the household's own spread is what evens it out
    assert dispersion[str(power)] < dispersion["0.0"]
    assert len(s_low) == len(s_high) == 48
