"""``python -m bench monthly-fleet``: a quick run (first households, sections 2-3 skipped)
prints the summary's contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main
from tests.services.monthly.fakes import daily_kwh
from tests.services.monthly.test_fleet import rows, write_block


def test_bench_monthly_fleet_first_households_without_sample_prints_the_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "lcl"
    folder.mkdir()
    write_block(folder, 0, rows("MAC000001", daily_kwh(200, seed=1)) + rows("MAC000002", [7.5] * 9))
    write_block(folder, 1, rows("MAC000003", daily_kwh(120, seed=3)))

    args = ["--data", str(folder), "--workers", "1", "--households", "2", "--sample", "0"]
    assert main(["monthly-fleet", *args]) == 0

    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    assert "the first 2 households" in out
    assert result["households"] == 2  # the first two, in block order
    assert result["prophet"] == 1
    assert result["fallbacks"] == 1
    assert result["failed"] == 0
    assert result["fleet_cpu_ms_per_household"] > 0
    assert result["seconds"] >= 0
    for skipped in ("speedup", "ours_mape", "cpu_p50_s", "cpu_ratio"):
        assert result[skipped] is None, skipped
    assert result["sample_households"] == 0
    assert result["events"] == 0
