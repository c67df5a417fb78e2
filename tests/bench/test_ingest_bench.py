"""``python -m bench ingest``: runs end to end on a tiny size and keeps its output contract."""

from __future__ import annotations

import json

import pytest

from bench.__main__ import available, main


def test_bench_ingest_prints_one_json_object_last(capsys: pytest.CaptureFixture[str]) -> None:
    assert "ingest" in available()
    assert main(["ingest", "--households", "2", "--shards", "2", "--naive-readings", "20"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) > 1  # human lines first
    result = json.loads(lines[-1])
    assert result["benchmark"] == "ingest"
    assert (result["households"], result["shards"], result["cores"]) == (2, 2, 1)
    for key in (
        "readings_per_s",
        "naive_readings_per_s",
        "ratio",
        "bytes_per_record",
        "records_per_shard_second",
        "shard_bytes_per_s_at_1000_records_per_s",
        "shard_limit_readings_per_s",
    ):
        assert result[key] > 0, key
    assert result["readings"] == 2 * 39_477  # every real row of the slice, per household
    assert result["naive_readings"] == 20
    # everything both paths published was read back from the stream and decoded
    assert result["read_back_readings"] == result["readings"] + 20
    assert result["read_back_records"] == result["records"] + 20
    # a day of readings per record: the shard's 1 MiB/s binds long before 1,000 records/s
    assert result["shard_limit_binding"] == "bytes"
    assert result["shard_bytes_per_s_at_1000_records_per_s"] > result["shard_limit_bytes_per_s"]
    assert result["bytes_per_record"] > 100 * result["bytes_per_reading"]
