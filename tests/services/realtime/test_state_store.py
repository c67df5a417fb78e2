"""The DynamoDB state table on moto: batched reads, writes that never go backwards."""

from __future__ import annotations

import numpy as np
import pytest

from services.realtime.adapters.state_store import (
    DynamoStateStore,
    StateStoreError,
    position_key,
)
from services.realtime.core.features import TARGET
from services.realtime.core.window import WindowConfig, WindowState, advance_one
from shared.batch import ReadingBatch

CONFIG = WindowConfig(900, 4, measurements=(TARGET,))
#: A real-looking Kinesis sequence number: far beyond DynamoDB's 38-digit numbers.
SEQUENCE = 49590338271490256608559692538361571095921575989136588802


def state(household: str, position: int, minutes: int = 90, power: float = 1.0) -> WindowState:
    batch = ReadingBatch(
        household, np.arange(minutes) * 60_000_000, {TARGET: np.full(minutes, power)}
    )
    fresh = WindowState.fresh(household, CONFIG)
    advanced, _ = advance_one(CONFIG, fresh, batch)
    return advanced.replace(position=position)


@pytest.fixture
def table(deploy_stack, clients) -> tuple[str, object]:
    stack = deploy_stack()
    return stack.outputs["RealtimeStateTableName"], clients("dynamodb")


def test_state_store_missing_households_are_absent(table):
    store = DynamoStateStore(*table)
    report = store.load(["nobody", "nobody-else"])
    assert (report.states, report.unreadable) == ({}, {})


def test_state_store_round_trips_a_state(table):
    store = DynamoStateStore(*table)
    original = state("uci-sceaux", SEQUENCE)

    saved = store.save([original])
    loaded = store.load(["uci-sceaux"]).states["uci-sceaux"]

    assert saved.written == ["uci-sceaux"]
    assert loaded.position == SEQUENCE
    np.testing.assert_array_equal(loaded.sums, original.sums)
    assert (loaded.head, loaded.last_ts_us) == (original.head, original.last_ts_us)


def test_state_store_item_holds_position_and_time_for_operators(table):
    name, client = table
    DynamoStateStore(name, client).save([state("h1", SEQUENCE)])

    item = client.get_item(TableName=name, Key={"household_id": {"S": "h1"}})["Item"]

    assert item["position"]["S"] == position_key(SEQUENCE)
    assert item["last_ts"]["N"] == str(89 * 60_000_000)
    assert item["mode"]["S"] == "model"


def test_state_store_never_rolls_a_household_back(table):
    store = DynamoStateStore(*table)
    newer = state("h1", SEQUENCE + 10, power=2.0)
    store.save([newer])

    # a redelivered batch (same position) and a slow older invocation (lower position)
    report = store.save([state("h1", SEQUENCE + 10, power=5.0), state("h2", 7)])
    older = store.save([state("h1", SEQUENCE, power=9.0)])

    assert report.stale == ["h1"]
    assert report.written == ["h2"]
    assert older.stale == ["h1"]
    np.testing.assert_array_equal(store.load(["h1"]).states["h1"].sums, newer.sums)


def test_state_store_moves_forward(table):
    store = DynamoStateStore(*table)
    store.save([state("h1", 99)])  # 2 digits
    report = store.save([state("h1", 100, power=3.0)])  # 3 digits: string order must follow

    assert report.written == ["h1"]
    assert store.load(["h1"]).states["h1"].position == 100


def test_state_store_reads_more_than_one_batch_get_of_households(table):
    store = DynamoStateStore(*table, max_workers=4)
    households = [f"h{i:03d}" for i in range(130)]
    report = store.save([state(h, i + 1, minutes=20) for i, h in enumerate(households)])

    loaded = store.load([*households, "h000", "unknown"])

    assert len(report.written) == 130
    assert sorted(loaded.states) == households
    assert loaded.states["h129"].position == 130


def test_state_store_reports_unreadable_states_instead_of_failing(table):
    name, client = table
    client.put_item(
        TableName=name,
        Item={
            "household_id": {"S": "old"},
            "position": {"S": position_key(1)},
            "state": {"B": b"v0"},
        },
    )
    DynamoStateStore(name, client).save([state("fine", 1)])

    report = DynamoStateStore(name, client).load(["old", "fine"])

    assert list(report.states) == ["fine"]
    assert "StateDecodeError" in report.unreadable["old"]


def test_state_store_write_to_a_missing_table_fails_per_household(clients):
    store = DynamoStateStore("no-such-table", clients("dynamodb"), max_attempts=1)
    report = store.save([state("h1", 1), state("h2", 2)])

    assert sorted(report.failed) == ["h1", "h2"]
    assert "ResourceNotFoundException" in report.failed["h1"]


class UnprocessedClient:
    """A DynamoDB client whose BatchGetItem never processes anything (throttled)."""

    def batch_get_item(self, RequestItems):
        return {"Responses": {}, "UnprocessedKeys": RequestItems}


def test_state_store_gives_up_on_unprocessed_keys_after_retries():
    sleeps: list[float] = []
    store = DynamoStateStore("t", UnprocessedClient(), max_attempts=3, sleep=sleeps.append)

    with pytest.raises(StateStoreError, match="still unprocessed"):
        store.load(["h1"])
    assert len(sleeps) == 2


def test_position_key_orders_like_the_numbers():
    positions = [0, 9, 10, 99, 100, SEQUENCE, SEQUENCE + 1, 10**128]
    assert sorted(positions, key=position_key) == positions
    with pytest.raises(ValueError, match="out of range"):
        position_key(-1)
