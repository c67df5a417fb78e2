"""``python -m bench latency``: runs end to end on a few samples and keeps its contract."""

from __future__ import annotations

import json

import pytest

from bench.__main__ import available, main


def test_bench_latency_prints_one_json_object_last(capsys: pytest.CaptureFixture[str]) -> None:
    assert "latency" in available()
    args = ["latency", "--samples", "3", "--realtime", "stub", "--warmup-minutes", "60"]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) > 1  # human lines first
    result = json.loads(lines[-1])
    assert result["benchmark"] == "latency"
    assert result["n"] == 3
    assert result["realtime"] == "stub"
    assert result["runner_errors"] == 0
    # a forecast can only be served after its reading is on the stream
    assert 0 < result["baseline_stream_p50_s"] <= result["p50_s"] <= result["p99_s"]
