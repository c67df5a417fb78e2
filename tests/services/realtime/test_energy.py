"""Energy-only meters served by the global model through the port, seasonal naive last."""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt
import pytest

from services.realtime.core.energy import LAST_RESORT, energy_forecast, to_model_grid
from services.realtime.core.fallback import FALLBACK_VERSION
from services.realtime.core.stream import Delivery, StreamConfig, step
from services.realtime.model.fleet_model import FleetSpec
from shared.batch import ReadingBatch
from tests.services.realtime.fakes import PersistenceModel
from tests.services.realtime.test_stream import T0, energy_only


class ProfileModel:
    """A fake fleet model: the same slot's mean over the known days, +-10 %; NaN (not
    served) for a window with less than one day of known bins. Records its calls."""

    def __init__(self, *, decline: bool = False) -> None:
        self.spec = FleetSpec(version="fake-fleet-1").port_spec()
        self.calls: list[int] = []
        self.issues: list[float] = []
        self._decline = decline

    def predict(self, windows: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        self.calls.append(len(windows))
        kw = windows[:, :, 0]
        self.issues.extend((windows[:, -1, 1] + self.spec.resolution_s).tolist())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(kw.reshape(len(kw), 7, 48), axis=1)
        out = np.stack([0.9 * mean, mean, 1.1 * mean], axis=-1)
        short = (~np.isnan(kw)).sum(axis=1) < 48
        out[short | self._decline] = np.nan
        return out


def _meter(name: str, days: float, interval_s: int) -> ReadingBatch:
    n = int(days * 86_400 // interval_s)
    hours = (np.arange(n) * interval_s / 3600) % 24
    kw = 0.2 + 0.8 * ((hours >= 17) & (hours < 22))
    return ReadingBatch(
        name,
        T0 + np.arange(n) * interval_s * 1_000_000,
        {"energy_kwh": kw * interval_s / 3600, "interval_s": np.full(n, float(interval_s))},
    )


def _config(spec, model) -> StreamConfig:
    return StreamConfig(spec, energy_model=model)


def test_energy_model_serves_a_household_from_its_first_complete_day(spec):
    model = ProfileModel()
    batch = energy_only("MAC000002", 1)
    extra = energy_only("MAC000002", 1, start_us=T0 + 86_400 * 1_000_000).slice(0, 1)

    result = step(
        {}, [Delivery(batch, 1), Delivery(extra, 2)], PersistenceModel(spec), _config(spec, model)
    )

    forecasts = result.to_forecasts()
    assert len(forecasts) == 1  # the step that completed the first day
    (first,) = forecasts
    assert first.model_version == "fake-fleet-1"
    assert first.fallback_reason is None
    assert first.resolution_s == 1800
    assert len(first.points) == 48  # day-ahead
    assert first.issued_at.timestamp() == (T0 + 86_400 * 1_000_000) / 1e6
    assert model.issues[-1] == first.issued_at.timestamp()
    assert result.stats.energy_model_windows == 1
    assert result.stats.fallback_windows == 0


def test_energy_model_called_once_for_every_household_of_the_batch(spec):
    model = ProfileModel()
    deliveries = [Delivery(energy_only(f"MAC{i:06d}", 3), i + 1) for i in range(5)]

    result = step({}, deliveries, PersistenceModel(spec), _config(spec, model))

    assert len(model.calls) == 1
    # every completed step went to the model, the first day's steps were declined
    assert model.calls == [result.stats.energy_model_windows + result.stats.skipped_steps]
    assert result.stats.energy_model_windows == 5 * 2 * 48
    assert {f.household_id for f in result.to_forecasts()} == {
        d.batch.household_id for d in deliveries
    }


def test_energy_model_less_than_a_day_is_skipped_with_the_reason(spec):
    model = ProfileModel()

    result = step(
        {},
        [Delivery(energy_only("MAC000002", 1).slice(0, 30))],
        PersistenceModel(spec),
        _config(spec, model),
    )

    assert not result.forecasts or not any(len(r) for r in result.forecasts)
    reasons = {s.code for s in result.skipped}
    assert reasons == {"fallback_warming_up"}
    assert any("model warming up" in s.reason for s in result.skipped)


def test_energy_model_declining_falls_back_to_seasonal_naive_marked(spec):
    model = ProfileModel(decline=True)

    result = step(
        {}, [Delivery(energy_only("MAC000002", 3))], PersistenceModel(spec), _config(spec, model)
    )

    forecasts = result.to_forecasts()
    assert forecasts
    assert {f.model_version for f in forecasts} == {FALLBACK_VERSION}
    assert all(f.fallback_reason and LAST_RESORT in f.fallback_reason for f in forecasts)
    assert {len(f.points) for f in forecasts} == {48}
    assert result.stats.fallback_windows == len(forecasts)


@pytest.mark.parametrize(
    ("interval_s", "resolution_s", "steps"), [(900, 900, 96), (3600, 3600, 24), (60, 900, 96)]
)
def test_energy_model_serves_meters_at_their_interval(spec, interval_s, resolution_s, steps):
    model = ProfileModel()

    result = step(
        {}, [Delivery(_meter("m1", 2, interval_s))], PersistenceModel(spec), _config(spec, model)
    )

    forecasts = result.to_forecasts()
    assert forecasts
    last = forecasts[-1]
    assert last.model_version == "fake-fleet-1"
    assert (last.resolution_s, len(last.points)) == (resolution_s, steps)
    # the evening peak comes back at the meter's own bins: 17:00-22:00 at 1 kW
    values = {p.timestamp.hour: p.value_kw for p in last.points}
    assert values[18] == pytest.approx(1.0)
    assert values[3] == pytest.approx(0.2)


def test_to_model_grid_hourly_windows_repeat_per_half_hour():
    grid, factor = to_model_grid(np.array([[1.0, 2.0, 3.0]]), 3600, 1800, 4)

    assert factor == -2
    assert grid.tolist() == [[2.0, 2.0, 3.0, 3.0]]


def test_to_model_grid_refuses_bins_that_do_not_fit():
    assert to_model_grid(np.zeros((1, 10)), 2700, 1800, 4) is None


def test_energy_forecast_bins_that_do_not_fit_go_to_seasonal_naive():
    model = ProfileModel()
    windows = np.tile(np.r_[np.full(16, 0.2), np.full(16, 1.0)], (1, 7))  # 45-min bins

    energy = energy_forecast(model, windows, np.array([10_000]), np.array([True]), 2700)

    assert energy.valid.tolist() == [True]
    assert energy.versions == [FALLBACK_VERSION]
    assert "do not fit" in (energy.fallback_reasons[0] or "")
    assert not model.calls
