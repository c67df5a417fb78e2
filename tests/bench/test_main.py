"""``python -m bench``: dispatch and the codec benchmark's output contract."""

from __future__ import annotations

import json

import pytest

from bench.__main__ import available, main


def test_bench_main_lists_benchmarks_for_an_unknown_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["no-such-bench"]) == 2
    assert main([]) == 2
    assert "codec" in capsys.readouterr().err
    assert "codec" in available()


def test_bench_codec_prints_one_json_object_last(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["codec", "--repeat", "1", "--rows", "2000"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) > 1  # human lines first
    result = json.loads(lines[-1])
    assert result["readings"] == 2000
    for key in (
        "encode_readings_per_s",
        "decode_readings_per_s",
        "ratio",
        "encode_ratio",
        "decode_ratio",
        "bytes_per_reading",
        "baseline_bytes_per_reading",
    ):
        assert result[key] > 0, key
    assert result["bytes_per_reading"] < result["baseline_bytes_per_reading"]
