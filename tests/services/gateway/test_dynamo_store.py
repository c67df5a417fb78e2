"""The DynamoDB query store on a moto server, with the table from the real template."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from services.gateway.adapters.dynamo_store import DynamoGatewayStore
from services.gateway.core.accuracy import HorizonSums, HouseholdAccuracy, TargetForecast
from services.gateway.core.consumption import MINUTE_US, DayKey, minute_updates
from services.gateway.core.model import AnomalyMark, ConsumerProgress, StoredMonthly
from shared.batch import ReadingBatch, datetime_to_us
from testing.reliability.gateway_world import forecast_for, monthly_for

T0 = dt.datetime(2007, 4, 1, tzinfo=dt.UTC)
KEY = DayKey("uci-0001", T0.date())


def _update(minutes, kw):
    stamps = np.array([datetime_to_us(T0) + m * MINUTE_US for m in minutes])
    batch = ReadingBatch("uci-0001", stamps, {"global_active_power_kw": np.array(kw)})
    return minute_updates(batch)[KEY]


@pytest.fixture
def table(deploy_stack):
    return deploy_stack().outputs["GatewayTableName"]


@pytest.fixture
def store(table, clients):
    return DynamoGatewayStore(table, client=clients("dynamodb"))


def _version(clients, table):
    item = clients("dynamodb").get_item(
        TableName=table, Key={"pk": {"S": "H#uci-0001"}, "sk": {"S": f"D#{T0.date()}"}}
    )["Item"]
    return int(item["version"]["N"])


def test_dynamo_store_merge_day_redelivery_writes_nothing(store, clients, table):
    update = _update([0, 1, 2], [1.0, 2.0, 3.0])

    assert store.merge_day(KEY, update) is True
    assert store.merge_day(KEY, update) is False

    assert _version(clients, table) == 1
    day = store.days("uci-0001", [T0.date(), T0.date() + dt.timedelta(days=1)])
    assert list(day) == [T0.date()]
    assert day[T0.date()][:3].tolist() == [1.0, 2.0, 3.0]
    assert np.isnan(day[T0.date()][3:]).all()


def test_dynamo_store_merge_day_retries_on_a_concurrent_writer(store, clients, table):
    """A write between our read and our conditional put is kept, and so is ours."""
    other = DynamoGatewayStore(table, client=clients("dynamodb"))
    real = clients("dynamodb")
    interleaved = []

    class Interleaving:
        def __getattr__(self, name):
            return getattr(real, name)

        def _read(self, method, **kwargs):
            reply = method(**kwargs)
            if not interleaved:
                interleaved.append(other.merge_day(KEY, _update([10], [9.0])))
            return reply

        def get_item(self, **kwargs):
            return self._read(real.get_item, **kwargs)

        def batch_get_item(self, **kwargs):  # the first read of a merge is batched
            return self._read(real.batch_get_item, **kwargs)

    racing = DynamoGatewayStore(table, client=Interleaving())

    assert racing.merge_day(KEY, _update([0], [1.0])) is True

    assert interleaved == [True]
    day = store.days("uci-0001", [T0.date()])[T0.date()]
    assert (day[0], day[10]) == (1.0, 9.0)
    assert _version(clients, table) == 2


def test_dynamo_store_days_batches_many_keys(store):
    days = [T0.date() + dt.timedelta(days=i) for i in range(130)]
    for day in days[::10]:
        update = _update([5], [2.0])
        store.merge_day(DayKey("uci-0001", day), update)

    found = store.days("uci-0001", days)

    assert sorted(found) == days[::10]


def test_dynamo_store_forecast_only_moves_forward(store):
    newer = forecast_for("uci-0001", T0 + dt.timedelta(minutes=5))
    older = forecast_for("uci-0001", T0)

    assert store.put_forecast(newer) is True
    assert store.put_forecast(older) is False
    assert store.put_forecast(newer) is False  # redelivery

    assert store.latest_forecast("uci-0001") == newer
    assert store.latest_forecast("uci-0002") is None


def test_dynamo_store_anomalies_by_range(store):
    for minutes in (0, 30, 60):
        mark = AnomalyMark("uci-0001", T0 + dt.timedelta(minutes=minutes), 4.0, "m1")
        store.put_anomaly(mark)
        store.put_anomaly(mark)

    found = store.anomalies("uci-0001", T0, T0 + dt.timedelta(minutes=60))

    assert [m.timestamp for m in found] == [T0, T0 + dt.timedelta(minutes=30)]
    assert found[0].score == 4.0


def test_dynamo_store_anomaly_keeps_its_kind_and_size(store):
    started = T0 - dt.timedelta(hours=2)
    mark = AnomalyMark("uci-0001", T0, 2.5, "m1", "excess", 3.25, 7200, started)
    store.put_anomaly(mark)

    assert store.anomalies("uci-0001", T0, T0 + dt.timedelta(minutes=1)) == [mark]


def test_dynamo_store_monthly_keeps_the_latest_as_of(store):
    current = monthly_for("uci-0001")
    older = current.model_copy(update={"as_of": dt.date(2007, 4, 1), "month_total_kwh": 1.0})

    assert store.put_monthly(StoredMonthly(current, "b", "results/a.json")) is True
    assert store.put_monthly(StoredMonthly(older, "b", "results/old.json")) is False

    stored = store.monthly("uci-0001", "2007-04")
    assert stored is not None
    assert stored.forecast == current
    assert stored.key == "results/a.json"
    assert store.monthly("uci-0001", "2007-05") is None


def test_dynamo_store_households_index_moves_forward(store):
    store.note_household("uci-0002", T0 + dt.timedelta(hours=1))
    store.note_household("uci-0002", T0)
    store.note_household("uci-0001", T0)

    assert [(h.household_id, h.last_reading_at) for h in store.households()] == [
        ("uci-0001", T0),
        ("uci-0002", T0 + dt.timedelta(hours=1)),
    ]
    assert store.household("uci-0003") is None


def test_dynamo_store_progress_and_throughput(store):
    for seconds, records in ((10, 5), (5, 7)):  # the second batch arrived earlier
        store.record_progress(
            ConsumerProgress(
                consumer="readings",
                last_arrival_at=T0 + dt.timedelta(seconds=seconds),
                last_event_at=T0,
                processed_at=T0 + dt.timedelta(seconds=20),
                records=records,
            )
        )

    (progress,) = store.progress()
    assert progress.last_arrival_at == T0 + dt.timedelta(seconds=10)
    assert progress.records == 12
    assert store.recent_records(T0) == {"readings": 12}
    assert store.recent_records(T0 + dt.timedelta(minutes=2)) == {"readings": 0}


def _targets(start: dt.datetime, count: int, *, horizon="next", res=1800):
    first = datetime_to_us(start)
    step = res * 1_000_000
    return [
        TargetForecast(horizon, res, first + i * step, 1.0 + i, 0.5 + i, 1.5 + i, first + i * step)
        for i in range(count)
    ]


def test_dynamo_store_targets_round_trip_and_redelivery_overwrites_itself(store):
    late = T0 + dt.timedelta(hours=22)
    targets = _targets(late, 6) + _targets(T0, 3, horizon="day_ahead", res=900)
    many = _targets(T0 + dt.timedelta(days=2), 48 * 2, res=900)  # > one update's attributes

    store.put_targets("uci-0001", targets + many)
    store.put_targets("uci-0001", list(reversed(targets)))  # redelivered, other order

    days = [T0.date() + dt.timedelta(days=i) for i in range(3)]
    assert store.targets("uci-0001", days) == sorted(targets + many)
    assert store.targets("uci-0001", days[:1]) == sorted(targets[:4] + targets[6:])  # by start day
    assert store.targets("uci-0002", days) == []


def test_dynamo_store_accuracy_kept_only_for_the_newest_ticket(store):
    result = HouseholdAccuracy(
        household_id="uci-0001",
        window_start=T0,
        window_end=T0 + dt.timedelta(days=7),
        horizons={"next": HorizonSums(pairs=3, abs_error=1.5), "day_ahead": HorizonSums()},
        resolutions_s=[1800],
    )
    stale = result.model_copy(update={"horizons": {"next": HorizonSums(pairs=1)}})
    old, new = store.accuracy_ticket("uci-0001"), store.accuracy_ticket("uci-0001")

    assert new == old + 1
    assert store.put_accuracy(result, new) is True
    assert store.put_accuracy(stale, old) is False

    assert store.accuracy("uci-0001") == result
    assert store.accuracy("uci-0002") is None
    other = result.model_copy(update={"household_id": "uci-0002"})
    assert store.put_accuracy(other, store.accuracy_ticket("uci-0002")) is True
    assert store.fleet_accuracy() == [result, other]


def test_dynamo_store_targets_written_as_one_attribute_per_item(store, clients, table):
    store.put_targets("uci-0001", _targets(T0, 4))

    item = clients("dynamodb").get_item(
        TableName=table, Key={"pk": {"S": "H#uci-0001"}, "sk": {"S": f"T#{T0.date()}"}}
    )["Item"]

    assert sorted(item) == ["pk", "sk", "targets", "version"]
    assert len(item["targets"]["S"].splitlines()) == 4


def test_dynamo_store_targets_of_the_older_layout_are_read_and_kept(store, clients, table):
    """An item written with an attribute per target (the older layout) still counts, and
    a merge into it keeps those targets."""
    old = _targets(T0, 2)
    clients("dynamodb").put_item(
        TableName=table,
        Item={
            "pk": {"S": "H#uci-0001"},
            "sk": {"S": f"T#{T0.date()}"},
            "version": {"N": "1"},
            **{f"n1800_{(t.start_us // 1_000_000) % 86_400}": {"S": v} for t, v in _legacy(old)},
        },
    )
    new = _targets(T0 + dt.timedelta(hours=2), 1)

    assert store.targets("uci-0001", [T0.date()]) == old
    store.put_targets("uci-0001", new)

    assert store.targets("uci-0001", [T0.date()]) == sorted(old + new)


def _legacy(targets):
    return [(t, f"{t.value_kw!r},{t.lower_kw!r},{t.upper_kw!r},{t.issued_us}") for t in targets]


def test_dynamo_store_batched_reads_match_the_single_ones(store):
    """``merge_days``, ``put_targets_of``, ``households_of`` and ``accuracy_inputs`` (the
    consumers' batched calls) store and read what the per-household calls do."""
    day, other = T0.date(), T0.date() + dt.timedelta(days=1)
    second = DayKey("uci-0002", day)
    updates = {KEY: _update([0, 1], [1.0, 2.0]), second: _update([5], [3.0])}

    assert store.merge_days(updates) == {KEY: True, second: True}
    assert store.merge_days(updates) == {KEY: False, second: False}  # redelivery
    assert store.put_targets_of({"uci-0001": _targets(T0, 3), "uci-0002": []}) == {}
    store.note_household("uci-0001", T0)

    assert set(store.households_of(["uci-0001", "uci-0002"])) == {"uci-0001"}
    inputs = store.accuracy_inputs({"uci-0001": ([day, other], [day]), "uci-0002": ([day], [])})
    for household in ("uci-0001", "uci-0002"):
        days, targets = inputs[household]
        assert days.keys() == store.days(household, [day, other]).keys()
        assert targets == store.targets(household, [day])
    assert inputs["uci-0001"][1] == _targets(T0, 3)
    assert inputs["uci-0002"][0][day][5] == 3.0


def test_dynamo_store_put_targets_of_reports_the_household_that_failed(store, clients, table):
    real = clients("dynamodb")

    class RefusesOneHousehold:
        def __getattr__(self, name):
            return getattr(real, name)

        def put_item(self, **kwargs):
            if kwargs["Item"]["pk"]["S"] == "H#uci-0002":
                raise OSError("throttled")
            return real.put_item(**kwargs)

    failing = DynamoGatewayStore(table, client=RefusesOneHousehold())

    failed = failing.put_targets_of({"uci-0001": _targets(T0, 2), "uci-0002": _targets(T0, 2)})

    assert list(failed) == ["uci-0002"]
    assert isinstance(failed["uci-0002"], OSError)
    assert store.targets("uci-0001", [T0.date()]) == _targets(T0, 2)
    assert store.targets("uci-0002", [T0.date()]) == []
