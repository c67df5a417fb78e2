"""The Kafka benchmark runs both paths on a tiny input and prints its JSON last."""

from __future__ import annotations

import json

import pytest

from bench import kafka
from wattstream.local.apache_kafka import KafkaUnavailable, kafka_libs


def test_kafka_bench_tiny_input_prints_rates_and_parity_last(capsys):
    try:
        kafka_libs()
    except KafkaUnavailable as error:
        pytest.skip(str(error))
    assert kafka.main(["--days", "2", "--households", "2", "--per-record", "120"]) == 0

    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["broker"].startswith("apache-kafka ")
    assert result["kafka_readings_per_s"] > 0
    assert result["lambda_path_readings_per_s"] > 0
    assert result["parity"] is True
    assert result["readings"] == 3_000
    assert result["kafka_dead_lettered"] == 0
