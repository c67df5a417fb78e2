"""Live accuracy through the two consumers (in-memory store): the join is idempotent
under redelivery and any arrival order of readings and forecasts."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from aws_lambda_powertools import Logger, Metrics
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.gateway.core.accuracy import household_accuracy
from services.gateway.shells.consumer import ConsumerDeps, refresh_accuracy
from services.gateway.shells.forecasts_lambda import apply_forecasts
from services.gateway.shells.readings_lambda import apply_readings
from shared.batch import ReadingBatch, datetime_to_us
from shared.publishing import stream_records
from shared.shell import deliveries
from testing.reliability.gateway_fakes import MemoryStore
from testing.reliability.gateway_world import flat_forecasts
from tests.lambda_events import kinesis_fixture_event
from tests.services.ingest.fakes import MemoryQuarantine

T0 = dt.datetime(2013, 3, 4, tzinfo=dt.UTC)
HH = "MAC000002"
SLOTS = 3 * 48


def _deps(store: MemoryStore) -> ConsumerDeps:
    return ConsumerDeps(
        store=store,
        quarantine=MemoryQuarantine(),
        logger=Logger(service="gateway-test"),
        metrics=Metrics(namespace="wattstream-test", service="gateway-test"),
    )


def _forecast(slot: int, kw: float) -> bytes:
    """A day-ahead half-hourly forecast issued at ``slot``, flat ``kw`` in [0.8, 1.25] kw."""
    issued = T0 + dt.timedelta(minutes=30 * slot)
    (forecast,) = flat_forecasts(
        HH, issued, 1, resolution_s=1800, steps=48, band=(kw * 0.8, kw, kw * 1.25)
    )
    return forecast.model_dump_json().encode()


def _reading(slot: int, kwh: float) -> bytes:
    stamp = datetime_to_us(T0) + slot * 1800 * 1_000_000
    batch = ReadingBatch(
        HH, np.array([stamp]), {"energy_kwh": np.array([kwh]), "interval_s": np.array([1800.0])}
    )
    (record,) = stream_records([batch])
    return record.data


def _records(payloads):
    event = kinesis_fixture_event([(HH, data) for data in payloads], role="gateway")
    return deliveries(event, kinesis=True)


def _deliver(units, batch_size: int) -> MemoryStore:
    """Deliver (kind, payload) units in order, in batches per consumer, as Lambda would."""
    store = MemoryStore()
    deps = _deps(store)
    for start in range(0, len(units), batch_size):
        chunk = units[start : start + batch_size]
        readings = [data for kind, data in chunk if kind == "reading"]
        forecasts = [data for kind, data in chunk if kind == "forecast"]
        if readings:
            assert not apply_readings(_records(readings), deps).failed
        if forecasts:
            assert not apply_forecasts(_records(forecasts), deps).failed
    return store


@st.composite
def arrivals(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kwh = rng.gamma(2.0, 0.2, SLOTS).round(3)
    units = [("reading", _reading(s, float(kwh[s]))) for s in range(SLOTS) if rng.random() < 0.9]
    units += [
        ("forecast", _forecast(s, float(kwh[s] * 2 * rng.uniform(0.7, 1.3))))
        for s in range(SLOTS)
        if rng.random() < 0.8
    ]
    order = draw(st.permutations(range(len(units))))
    duplicates = draw(st.lists(st.integers(0, len(units) - 1), max_size=15))
    batch_size = draw(st.integers(1, 40))
    return units, [units[i] for i in [*order, *duplicates]], batch_size


#: Generation and shrinking speed depend on the machine, never a failure.
SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]


@settings(deadline=None, max_examples=15, suppress_health_check=SLOW_OK)
@given(arrivals())
def test_consumers_accuracy_same_under_redelivery_and_any_order(case):
    units, delivered, batch_size = case

    reference = _deliver(units, batch_size=len(units))
    shuffled = _deliver(delivered, batch_size)

    assert shuffled.accuracy(HH) == reference.accuracy(HH)
    assert shuffled.target_items == reference.target_items
    assert reference.accuracy(HH).horizons["next"].pairs > 0  # type: ignore[union-attr]


def test_consumers_forecast_before_actual_and_actual_before_forecast_agree():
    forecast = ("forecast", _forecast(50, 1.0))
    readings = [("reading", _reading(2, 0.7)), ("reading", _reading(50, 0.4))]  # naive, actual

    first = _deliver([forecast, *readings], batch_size=1)
    last = _deliver([*readings, forecast], batch_size=1)

    assert first.accuracy(HH) == last.accuracy(HH)
    metrics = first.accuracy(HH).horizons["next"].metrics()  # type: ignore[union-attr]
    assert (metrics.pairs, metrics.coverage) == (1, 1.0)  # 0.8 kW inside [0.8, 1.25]
    assert (metrics.mae_kw, metrics.mase) == (pytest.approx(0.2), pytest.approx(0.2 / 0.6))


def test_consumers_accuracy_waits_for_actuals():
    store = _deliver([("forecast", _forecast(50, 1.0))], batch_size=1)

    assert store.accuracy(HH) is None  # no reading yet: nothing to score
    assert len(store.target_items) == 2  # its next-interval and day-ahead steps are kept


def test_refresh_accuracy_older_ticket_never_overwrites_newer():
    """A recomputation that read older inputs loses against one that started later."""
    store = _deliver([("reading", _reading(s, 0.5)) for s in range(96)], batch_size=96)
    slow_ticket = store.accuracy_ticket(HH)  # a recomputation starts, reads, stalls...
    stale = household_accuracy(HH, [], store.days(HH, [T0.date(), T0.date() + dt.timedelta(1)]))
    apply_forecasts(_records([_forecast(60, 1.0)]), _deps(store))  # newer input, newer ticket
    fresh = store.accuracy(HH)

    assert stale is not None
    assert store.put_accuracy(stale, slow_ticket) is False
    assert store.accuracy(HH) == fresh
    assert fresh.horizons["next"].pairs == 1  # type: ignore[union-attr]


def test_readings_consumer_failed_accuracy_retries_the_household_records():
    class NoTickets(MemoryStore):
        def accuracy_ticket(self, household_id: str) -> int:
            raise OSError("throttled")

    store = NoTickets()
    outcome = apply_readings(_records([_reading(0, 0.5), _reading(1, 0.5)]), _deps(store))

    assert len(outcome.failed) == 2
    assert all(reason.startswith("accuracy: OSError") for reason in outcome.failed.values())
    assert len(store.day_items) == 1  # the minutes are kept; the retry rewrites nothing


def test_forecasts_consumer_failed_accuracy_retries_the_household_records():
    class NoTickets(MemoryStore):
        def accuracy_ticket(self, household_id: str) -> int:
            raise OSError("throttled")

    outcome = apply_forecasts(_records([_forecast(0, 1.0)]), _deps(NoTickets()))

    assert len(outcome.failed) == 1


def test_refresh_accuracy_without_readings_writes_nothing():
    store = MemoryStore()

    assert refresh_accuracy(store, HH) is False
    assert store.fleet_accuracy() == []


def test_readings_consumer_skips_a_record_under_another_households_partition_key(caplog):
    """The shared readings decoder's key check: the record is counted and skipped, not applied."""
    store = MemoryStore()
    event = kinesis_fixture_event(
        [("MAC999999", _reading(0, 0.5)), (HH, _reading(1, 0.5))], role="gateway"
    )

    outcome = apply_readings(deliveries(event, kinesis=True), _deps(store))

    assert not outcome.failed
    assert outcome.counts["RecordsUndecodable"] == 1
    assert outcome.counts["HouseholdDays"] == 1
    (summary,) = store.households()
    assert summary.household_id == HH
    assert summary.last_reading_at == T0 + dt.timedelta(minutes=30)  # only the keyed record
    assert "another household's partition key" in caplog.text
