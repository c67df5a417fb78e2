"""The Kafka state benchmark runs both stores on a tiny backlog and prints its JSON last."""

from __future__ import annotations

import json

import pytest

from bench import kafka_state
from wattstream.local.apache_kafka import KafkaUnavailable, kafka_libs


@pytest.mark.slow  # ~2 min: six worker processes join a group, three kill -9 restarts
def test_kafka_state_bench_tiny_backlog_reports_rates_and_restart_correctness(capsys):
    try:
        kafka_libs()
    except KafkaUnavailable as error:
        pytest.skip(str(error))
    assert kafka_state.main(["--records", "800", "--households", "16"]) == 0

    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["broker"].startswith("apache-kafka ")
    assert result["table_records_per_s"] > 0
    assert result["dynamodb_records_per_s"] > 0
    assert result["dynamodb_lost"] == 0
    assert result["dynamodb_duplicated"] == 0
    assert result["table_lost"] == 0
    assert result["table_duplicated"] == 0
