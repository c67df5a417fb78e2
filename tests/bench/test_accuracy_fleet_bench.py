"""``python -m bench accuracy-fleet``: the output contract, small and fast; full data slow."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from bench.__main__ import main
from tests.conftest import DATA_DIR

CONTRACT = {
    "mase",
    "mase_seasonal_naive",
    "mase_ratio",
    "mase_mean7",
    "mase_median7",
    "mase_best_naive",
    "coverage_80",
    "households",
}


def _synthetic_year(folder: Path, households: int) -> Path:
    """Half-hourly energy of ``households`` meters for 2013 with a daily shape and noise."""
    rng = np.random.default_rng(5)
    start = dt.datetime(2013, 1, 1)
    stamps = [f"{start + dt.timedelta(minutes=30 * i):%Y-%m-%d %H:%M:%S}" for i in range(17520)]
    slot = np.arange(17520) % 48
    lines = ["LCLid,tstp,energy(kWh/hh)"]
    for h in range(households):
        level = 0.1 + 0.1 * h
        kwh = level * (1 + (slot >= 34) * (slot < 44)) + rng.gamma(1.0, 0.03, 17520)
        lines += [f"MAC{h:06d},{t}, {v:.3f} " for t, v in zip(stamps, kwh, strict=True)]
    path = folder / "lcl_halfhourly_2013_100households.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return folder


def _check_contract(result: dict) -> None:
    assert CONTRACT <= set(result)
    assert CONTRACT <= set(result["heldout"])
    for split in (result, result["heldout"]):
        assert split["mase_best_naive"] == min(
            split["mase_seasonal_naive"], split["mase_mean7"], split["mase_median7"]
        )
        assert split["mase_ratio"] == pytest.approx(
            split["mase"] / split["mase_seasonal_naive"], abs=1e-3
        )
        assert 0 <= split["coverage_80"] <= 1
        assert CONTRACT <= set(split["streaming"])


@pytest.mark.timeout(600)
def test_bench_accuracy_fleet_small_run_prints_the_contract_json_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _synthetic_year(tmp_path, 5)

    code = main(
        [
            "accuracy-fleet",
            "--data",
            str(data),
            "--epochs",
            "1",
            "--windows-per-household",
            "60",
            "--stream-stride",
            "48",
        ]
    )

    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("| main, day-ahead |") for line in lines)
    result = json.loads(lines[-1])
    _check_contract(result)
    assert result["households"] == 5
    assert result["heldout"]["households"] == 1
    assert result["heldout"]["train_households"] == 4


def test_bench_accuracy_fleet_needs_the_data_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["accuracy-fleet", "--data", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_bench_accuracy_fleet_full_beats_the_naive_rules(
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = DATA_DIR / "lcl_halfhourly_2013_100households.csv.gz"
    if not source.is_file():
        pytest.skip(f"London half-hourly file not found at {source} (set WATTSTREAM_DATA_DIR)")

    assert main(["accuracy-fleet", "--data", str(DATA_DIR), "--stream-stride", "4"]) == 0

    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    _check_contract(result)
    for split in (result, result["heldout"]):
        assert split["mase"] < split["mase_best_naive"]
        assert split["mase_ratio"] < 0.85
        assert 0.7 <= split["coverage_80"] <= 0.9
