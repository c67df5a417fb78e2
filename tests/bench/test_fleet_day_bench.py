"""The fleet-day benchmark runs the whole local pipeline and accounts for every reading."""

from __future__ import annotations

import json

import pytest

from bench import fleet_day
from wattstream.settings import shipped_london_dir

CONTRACT = (
    "households",
    "readings",
    "seconds",
    "speed_vs_real_time",
    "stages",
    "lost",
    "duplicated",
    "max_lag_s",
)


def test_fleet_day_bench_few_households_loses_and_duplicates_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--households", "3", "--data-dir", str(shipped_london_dir()), "--seed", "7"]

    assert fleet_day.main(argv) == 0

    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert all(field in result for field in CONTRACT)
    assert result["households"] == 3
    assert result["readings"] > 0
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    assert result["archive"]["rows"] == result["readings"]
    assert result["query_store"]["readings"] == result["readings"]
    stages = result["stages"]
    assert {"ingest", "archive", "realtime", "gateway_readings", "gateway_forecasts"} <= set(stages)
    assert stages["archive"]["items"] == result["readings"]
    assert stages["gateway_forecasts"]["items"] == result["forecasts_published"] > 0
    assert result["monthly"]["results"] > 0
    assert result["runner_errors"] == {}


def test_fleet_day_bench_rejects_an_empty_fleet(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        fleet_day.main(["--households", "0"])
    assert "--households" in capsys.readouterr().err
