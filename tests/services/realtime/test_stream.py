"""The streaming step: batching across households, identity, redelivery, fallback, anomalies."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from services.realtime.core.fallback import FALLBACK_VERSION
from services.realtime.core.features import MEASUREMENTS, TARGET, feature_matrix
from services.realtime.core.stream import Delivery, StreamConfig, finish, prepare, step
from services.realtime.core.window import WindowState
from shared.batch import ReadingBatch, datetime_to_us
from shared.schema import Forecast
from tests.services.realtime.fakes import PersistenceModel, tiny_spec

BIN_US = 900 * 1_000_000
MINUTE_US = 60_000_000
HALF_HOUR_US = 1800 * 1_000_000
T0 = datetime_to_us(dt.datetime(2013, 1, 7, tzinfo=dt.UTC))


def household(april: ReadingBatch, name: str, start: int, count: int) -> ReadingBatch:
    """Real UCI minutes (all seven measurements) under another household id."""
    piece = april.slice(start, start + count)
    return ReadingBatch(name, piece.timestamps_us, {m: piece.columns[m] for m in MEASUREMENTS})


def energy_only(name: str, days: int, start_us: int = T0) -> ReadingBatch:
    """A London-style meter: the energy of each half hour, with a daily shape."""
    n = days * 48
    hours = (np.arange(n) % 48) / 2
    kwh = 0.1 + 0.2 * (np.sin(2 * np.pi * (hours - 6) / 24) > 0) + 0.01 * (np.arange(n) % 3)
    return ReadingBatch(
        name,
        start_us + np.arange(n) * HALF_HOUR_US,
        {"energy_kwh": kwh, "interval_s": np.full(n, 1800.0)},
    )


def flat_minutes(name: str, start_min: int, count: int, power: float | np.ndarray) -> ReadingBatch:
    """Minute readings with every measurement (constant extras), from T0 + start_min."""
    stamps = T0 + (start_min + np.arange(count)) * MINUTE_US
    columns = {m: np.full(count, 1.0) for m in MEASUREMENTS}
    columns["voltage_v"] = np.full(count, 240.0)
    columns[TARGET] = np.broadcast_to(np.asarray(power, dtype=float), (count,)).copy()
    return ReadingBatch(name, stamps, columns)


@pytest.fixture
def config(spec) -> StreamConfig:
    return StreamConfig(spec)


# -------------------------------------------------------------------------------- batching


def test_stream_step_calls_the_model_once_for_every_household(april, spec, config):
    model = PersistenceModel(spec)
    deliveries = [
        Delivery(household(april, f"uci-{i}", 1440 * i, 600), position=10 + i) for i in range(3)
    ]

    result = step({}, deliveries, model, config)

    assert len(model.calls) == 1
    assert model.calls[0] == result.stats.model_windows == result.stats.forecasts
    per_household = {h: 0 for h in result.states}
    for forecast in result.to_forecasts():
        per_household[forecast.household_id] += 1
    # 600 minutes = 40 bins; 8-bin windows: every household gets the same 32 steps' worth
    assert per_household == {"uci-0": 32, "uci-1": 32, "uci-2": 32}


def test_stream_step_model_inputs_are_the_training_feature_rows(april, spec, config):
    prepared = prepare({}, [Delivery(household(april, "uci-sceaux", 0, 300))], config)

    (group,) = prepared.groups
    windows = group.advanced.windows[group.valid]
    step_bins = group.advanced.step_bins[group.valid]
    assert len(prepared.model_inputs) == len(step_bins) > 2
    for i in (0, len(step_bins) - 1):
        starts = (step_bins[i] - spec.input_steps + np.arange(spec.input_steps)) * BIN_US
        expected = feature_matrix(windows[i], starts).astype(np.float32)
        np.testing.assert_array_equal(prepared.model_inputs[i], expected)


def test_stream_step_skips_steps_and_says_why(april, spec, config):
    # the first readings (warming up) and April's 3,723-minute gap
    records = [
        Delivery(april.slice(s, s + 1440), position=1 + s) for s in range(34_000, 40_000, 1440)
    ]
    states: dict = {}
    skipped = []
    for delivery in records:
        result = step(states, [delivery], PersistenceModel(spec), config)
        states.update(result.states)
        skipped.extend(result.skipped)

    codes = {s.code for s in skipped}
    assert codes == {"warming_up", "gap"}
    warming = next(s for s in skipped if s.code == "warming_up")
    assert warming.steps == spec.input_steps - 1
    assert "warming up" in warming.reason
    gap = next(s for s in skipped if s.code == "gap")
    assert "7200 s" in gap.reason


# ----------------------------------------------------------------------- identity, output


def test_stream_forecast_identity_is_household_and_first_step(april, spec, config):
    batch = household(april, "uci-sceaux", 0, 200)
    result = step({}, [Delivery(batch, 5)], PersistenceModel(spec), config)

    forecasts = result.to_forecasts()
    last = forecasts[-1]
    head = (batch.timestamps_us[-1] // BIN_US) * BIN_US
    assert datetime_to_us(last.issued_at) == head  # the open bin is the first forecast step
    assert [datetime_to_us(p.timestamp) for p in last.points] == [
        head + k * BIN_US for k in range(spec.horizon_steps)
    ]
    assert last.resolution_s == 900
    assert last.model_version == spec.version
    assert last.fallback_reason is None
    assert all(p.lower_kw <= p.value_kw <= p.upper_kw for f in forecasts for p in f.points)
    assert len({(f.household_id, f.issued_at) for f in forecasts}) == len(forecasts)


def test_stream_documents_are_the_forecasts_as_json(april, spec, config):
    result = step(
        {},
        [Delivery(household(april, "a", 0, 300)), Delivery(energy_only("b", 3))],
        PersistenceModel(spec),
        config,
    )

    documents = result.documents()
    assert [Forecast.model_validate_json(d.data) for d in documents] == sorted(
        result.to_forecasts(), key=lambda f: (f.household_id, f.issued_at)
    )
    assert [(d.household_id, d.issued_us) for d in documents] == sorted(
        (d.household_id, d.issued_us) for d in documents
    )


def test_stream_same_states_and_records_give_identical_documents(april, spec, config):
    deliveries = [Delivery(household(april, "a", 0, 500), 1), Delivery(energy_only("b", 3), 2)]
    first = step({}, deliveries, PersistenceModel(spec), config)
    again = step({}, deliveries, PersistenceModel(spec), config)

    assert [d.data for d in first.documents()] == [d.data for d in again.documents()]


def test_stream_redelivered_records_forecast_nothing_and_keep_states(april, spec, config):
    deliveries = [Delivery(household(april, "a", 0, 500), 7), Delivery(energy_only("b", 3), 8)]
    first = step({}, deliveries, PersistenceModel(spec), config)

    again = step(first.states, deliveries, PersistenceModel(spec), config)

    assert again.stats.duplicate_records == 2
    assert again.stats.forecasts == 0
    assert again.states == {}  # nothing to write back


def test_stream_record_after_a_redelivered_one_is_applied_once(april, spec, config):
    batch = household(april, "a", 0, 600)
    first = step({}, [Delivery(batch.slice(0, 300), 1)], PersistenceModel(spec), config)

    # the retried batch starts at the already-applied record 1, then brings record 2
    retry = [Delivery(batch.slice(0, 300), 1), Delivery(batch.slice(300, 600), 2)]
    second = step(first.states, retry, PersistenceModel(spec), config)
    straight = step({}, [Delivery(batch.slice(0, 300), 1)], PersistenceModel(spec), config)
    straight = step(straight.states, retry[1:], PersistenceModel(spec), config)

    assert second.stats.duplicate_records == 1
    assert second.states["a"].position == 2
    assert [d.data for d in second.documents()] == [d.data for d in straight.documents()]


def test_stream_state_keeps_the_newest_forecast(april, spec, config):
    result = step({}, [Delivery(household(april, "a", 0, 300), 3)], PersistenceModel(spec), config)

    state = result.states["a"]
    newest = result.to_forecasts()[-1]
    assert state.forecast_start_us == datetime_to_us(newest.issued_at)
    assert state.forecast[:, 1].tolist() == [p.value_kw for p in newest.points]
    assert state.position == 3


# ------------------------------------------------------------------------------- anomaly


def meter_days(name: str, days: int, extra_kw: dict[int, float]) -> list[ReadingBatch]:
    """A London-style meter, one batch per day; ``extra_kw`` adds kW to some half hours."""
    batch = energy_only(name, days)
    kwh = batch.columns["energy_kwh"].copy()
    for i, kw in extra_kw.items():
        kwh[i] += kw / 2
    batch = ReadingBatch(name, batch.timestamps_us, {**batch.columns, "energy_kwh": kwh})
    return [batch.slice(d * 48, (d + 1) * 48) for d in range(days)]


def stream_days(spec, config, batches, states=None, first_position=1):
    """Feed the batches one step each; all forecasts, and the final states."""
    states = dict(states or {})
    forecasts: list[Forecast] = []
    for position, batch in enumerate(batches, start=first_position):
        result = step(states, [Delivery(batch, position)], PersistenceModel(spec), config)
        states.update(result.states)
        forecasts.extend(result.to_forecasts())
    return forecasts, states


EXCESS_AT = 9 * 48 + 36  # day 9, 18:00


def test_stream_excess_on_an_energy_meter_is_flagged_with_kind_size_and_duration(spec, config):
    batches = meter_days("MAC000002", 11, {EXCESS_AT + k: 1.5 for k in range(6)})  # 3 h

    forecasts, _ = stream_days(spec, config, batches)

    flagged = [f for f in forecasts if f.anomaly]
    assert flagged, "a 1.5 kW excess for 3 h must be flagged"
    start = dt.datetime.fromtimestamp((T0 + EXCESS_AT * HALF_HOUR_US) / 1e6, dt.UTC)
    end = start + dt.timedelta(hours=3)
    assert all(start < f.issued_at <= end for f in flagged)  # issued after the bin completed
    last = flagged[-1]
    assert last.anomaly_kind == "excess"
    assert last.anomaly_start == start
    assert last.anomaly_duration_s == (last.issued_at - start).total_seconds()
    assert last.anomaly_kwh == pytest.approx(1.5 * last.anomaly_duration_s / 3600, rel=0.15)
    assert last.anomaly_score > config.anomaly.threshold
    assert last.expected_kw is not None
    assert last.expected_kw < 1.0


def test_stream_normal_days_are_not_flagged(spec, config):
    forecasts, _ = stream_days(spec, config, meter_days("MAC000002", 10, {}))

    assert forecasts
    assert not any(f.anomaly for f in forecasts)
    assert all(f.anomaly_kind is None and f.anomaly_kwh is None for f in forecasts)


def test_stream_anomaly_state_survives_a_restart(spec, config):
    batches = meter_days("MAC000002", 11, {EXCESS_AT + k: 1.5 for k in range(6)})
    straight, _ = stream_days(spec, config, batches)

    _, states = stream_days(spec, config, batches[:9])
    restored = {h: WindowState.from_bytes(s.to_bytes()) for h, s in states.items()}
    assert restored["MAC000002"].anomaly is not None
    rest, _ = stream_days(spec, config, batches[9:], restored, first_position=10)

    assert any(f.anomaly for f in rest)
    assert [f.model_dump() for f in straight[-len(rest) :]] == [f.model_dump() for f in rest]


# ------------------------------------------------------------------------------ fallback


def test_stream_energy_only_meter_gets_a_marked_fallback(april, spec, config):
    model = PersistenceModel(spec)
    deliveries = [
        Delivery(energy_only("MAC000002", 4), 1),
        Delivery(household(april, "uci", 0, 300), 2),
    ]

    result = step({}, deliveries, model, config)

    fallback = [f for f in result.to_forecasts() if f.household_id == "MAC000002"]
    assert fallback, "two days of history are enough for the fallback"
    assert all(f.fallback_reason and "univariate fallback" in f.fallback_reason for f in fallback)
    assert all("voltage_v" in f.fallback_reason for f in fallback)
    assert {f.model_version for f in fallback} == {FALLBACK_VERSION}
    assert {f.resolution_s for f in fallback} == {1800}  # the meter's half hours
    assert {len(f.points) for f in fallback} == {2}  # the model's hour, in half hours
    # the model saw only the UCI household's windows
    assert model.calls == [result.stats.model_windows]
    assert result.stats.fallback_windows == len(fallback)
    assert result.states["MAC000002"].mode == "fallback"


def test_stream_fallback_repeats_yesterday(spec, config):
    batch = energy_only("MAC000002", 4)
    result = step({}, [Delivery(batch)], PersistenceModel(spec), config)

    last = result.to_forecasts()[-1]
    issued = datetime_to_us(last.issued_at)
    yesterday = batch.timestamps_us == issued - 86_400 * 1_000_000
    expected = batch.columns["energy_kwh"][yesterday][0] * 2  # kWh per half hour -> kW
    assert last.points[0].lower_kw <= expected <= last.points[0].upper_kw
    assert last.points[0].value_kw == pytest.approx(expected)  # the pattern repeats exactly


def test_stream_meter_that_stops_sending_voltage_switches_to_fallback(april, spec, config):
    batch = household(april, "uci", 0, 300)
    states = step({}, [Delivery(batch, 1)], PersistenceModel(spec), config).states
    later = april.slice(300, 400)
    power_only = ReadingBatch("uci", later.timestamps_us, {TARGET: later.columns[TARGET]})

    result = step(states, [Delivery(power_only, 2)], PersistenceModel(spec), config)

    ((name, why),) = result.resets
    assert name == "uci"
    assert "now fallback" in why
    assert result.states["uci"].mode == "fallback"
    assert result.states["uci"].position == 2


def test_stream_state_of_another_model_shape_is_restarted(april, spec):
    batch = household(april, "uci", 0, 300)
    old = StreamConfig(tiny_spec("tiny-older").model_copy(update={"input_steps": 4}))
    states = step({}, [Delivery(batch, 1)], PersistenceModel(old.spec), old).states

    result = step(
        states,
        [Delivery(household(april, "uci", 300, 10), 2)],
        PersistenceModel(spec),
        StreamConfig(spec),
    )

    assert result.resets == [("uci", "window shape changed: now model (all measurements)")]
    assert result.states["uci"].input_steps == spec.input_steps


# --------------------------------------------------------------------------- model failure


def test_stream_finish_without_predictions_leaves_model_households_out(april, spec, config):
    deliveries = [Delivery(household(april, "uci", 0, 300), 1), Delivery(energy_only("MAC1", 3), 2)]
    prepared = prepare({}, deliveries, config)

    result = finish(prepared, None)

    assert prepared.model_households == ["uci"]
    assert set(result.states) == {"MAC1"}
    assert {f.household_id for f in result.to_forecasts()} == {"MAC1"}


def test_stream_finish_refuses_predictions_of_the_wrong_count(april, spec, config):
    prepared = prepare({}, [Delivery(household(april, "uci", 0, 300))], config)
    with pytest.raises(ValueError, match="predictions for"):
        finish(prepared, np.zeros((1, spec.horizon_steps, 3)))


def test_stream_fresh_state_carries_the_window_config(spec, config):
    state = WindowState.fresh("h", config.model_window)
    assert state.fits(config.model_window)
    assert state.measurements == MEASUREMENTS
