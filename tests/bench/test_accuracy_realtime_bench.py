"""``python -m bench accuracy-realtime``: the output contract (one epoch per protocol)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bench_accuracy_realtime_prints_the_protocol_json_last(
    full_uci: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["accuracy-realtime", "--data", str(full_uci), "--epochs", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("| day_ahead_15min |") for line in lines)
    result = json.loads(lines[-1])
    for protocol in ("day_ahead_15min", "hourly_one_step"):
        ours = result[protocol]
        assert 0 < ours["mae"] < ours["rmse"] < 2
        assert ours["test_windows"] > 0
        assert set(result["published"][protocol]) >= {"rmse", "mae", "source"}
        assert result["train_seconds"][protocol] > 0
        for baseline in ("persistence", "seasonal_naive", "linear_regression"):
            assert result["baselines"][baseline][protocol]["rmse"] > 0
    # day-ahead: the ensemble is our point forecast, every member is reported beside it
    day_ahead = result["day_ahead_15min"]
    assert day_ahead["point"] == "ensemble"
    assert set(day_ahead["members"]) == {"profile_regression", "mlp", "lstm", "lstm_median"}
    assert sum(day_ahead["ensemble_weights"].values()) == pytest.approx(1)
    assert day_ahead["validation"]["ensemble"]["rmse"] <= min(
        day_ahead["validation"][k]["rmse"] for k in ("profile_regression", "mlp", "lstm")
    )
    assert day_ahead["validation_windows"] > 0
    assert set(day_ahead["regression_shrinkage"]) == {"ridge", "pool"}
    assert result["hourly_one_step"]["point"] == "median"
    # one epoch is enough to beat persistence on both protocols
    assert (
        result["day_ahead_15min"]["rmse"]
        < result["baselines"]["persistence"]["day_ahead_15min"]["rmse"]
    )


def test_bench_accuracy_realtime_needs_the_data_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["accuracy-realtime", "--data", str(tmp_path / "missing.txt.gz")]) == 2
    assert "not found" in capsys.readouterr().err
