"""``python -m bench anomalies``: the output contract (fast mode) and the goal (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main
from tests.conftest import APRIL_2007, DATA_DIR

LCL = DATA_DIR / "lcl_halfhourly_2013_100households.csv.gz"
KINDS = {"excess", "stuck_zero", "spike", "level_shift"}


@pytest.fixture(scope="module")
def lcl() -> Path:
    if not LCL.exists():
        pytest.skip(f"London half-hourly file not found at {LCL} (set WATTSTREAM_DATA_DIR)")
    return LCL


def _result(capsys: pytest.CaptureFixture[str]) -> dict:
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| injected kind |")
    return json.loads(lines[-1])


def test_bench_anomalies_fast_mode_prints_the_contract_json_last(
    lcl: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["anomalies", "--lcl", str(lcl), "--uci", str(APRIL_2007), "--households", "3"]
    assert main([*args, "--segment-days", "14", "--calibrate"]) == 0
    result = _result(capsys)
    assert 0 <= result["flag_rate_normal"] <= 0.05
    assert 0 <= result["recall"] <= 1
    assert 0 <= result["precision"] <= 1
    assert set(result["by_kind"]) == KINDS
    for row in result["by_kind"].values():
        assert row["injected"] > 0
        assert {"recall", "precision", "kind_named_right"} <= set(row)
    # the previous rule, on the same segments, flags far more normal bins
    assert result["baseline"]["flag_rate_normal"] > 5 * result["flag_rate_normal"]
    assert result["calibration"]["threshold_calibrated"] > 0
    assert (
        result["split"]["calibration"]["london_months"]
        != result["split"]["report"]["london_months"]
    )


def test_bench_anomalies_same_seed_same_json(lcl: Path, capsys: pytest.CaptureFixture[str]):
    args = ["anomalies", "--lcl", str(lcl), "--uci", str(APRIL_2007), "--households", "2"]
    args += ["--segment-days", "14", "--no-baseline"]
    assert main(args) == 0
    first = _result(capsys)
    assert main(args) == 0
    second = _result(capsys)
    first.pop("seconds"), second.pop("seconds")
    assert first == second


def test_bench_anomalies_needs_the_data_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["anomalies", "--lcl", str(tmp_path / "missing.csv.gz")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_bench_anomalies_full_run_meets_the_flag_rate_goal(
    lcl: Path, full_uci: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["anomalies", "--lcl", str(lcl), "--uci", str(full_uci)]) == 0
    result = _result(capsys)
    assert result["flag_rate_normal"] <= 0.01
    assert all(d["flag_rate_normal"] <= 0.01 for d in result["by_dataset"].values())  # UCI too
    assert result["recall"] >= 0.8
    assert result["by_kind"]["stuck_zero"]["recall"] >= 0.8
    assert result["flag_rate_ratio_vs_baseline"] < 0.1
