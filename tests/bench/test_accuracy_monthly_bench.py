"""``python -m bench accuracy-monthly``: the figures it reports and its options."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.accuracy_monthly import (
    DEFAULT_SETTINGS,
    FleetModels,
    _days,
    common_shock_mape,
    mape_table,
    noise_floor_pct,
    previous_blend,
    rest_of_month_rows,
    retrain_days,
    summarize,
)
from services.monthly.core.backtest import rest_of_month_tasks
from tests.services.monthly.fakes import daily_kwh, series_of
from tests.services.monthly.test_fleet_model import toy_model


def row(actual: float, ours: float, trailing: float, weekday: float, in80: bool) -> dict:
    return {
        "dataset": "london_2013",
        "household_id": "h",
        "unseen": True,
        "actual": actual,
        "ours": ours,
        "ours:in80": in80,
        "ours:in95": True,
        "ours:cpu": 0.0,
        "trailing_28d_mean": trailing,
        "same_weekday_4w_mean": weekday,
        "last_year_scaled": trailing,
    }


def test_summarize_win_rate_is_against_the_best_naive_rule_on_the_same_forecasts():
    rows = [
        row(100, 101, 110, 104, True),  # ours wins against weekday (4 %)
        row(100, 106, 110, 104, False),  # loses
        row(100, 98, 90, 103, True),  # wins
        row(100, 100, 100, 100, True),  # a tie is not a win
    ]
    s = summarize(rows, "ours")

    assert s["best_naive"] == "same_weekday_4w_mean"  # 2.75 % against 7.5 %
    assert s["win_rate"] == 0.5
    assert s["coverage_80"] == 0.75
    assert s["rest_of_month_mape"] == pytest.approx(2.25)
    assert s["improvement_over_best_naive_pct"] == pytest.approx(18.2)
    assert summarize([], "ours") == {"forecasts": 0}


def test_summarize_reports_a_column_only_some_forecasts_have():
    rows = [row(100, 101, 110, 104, True), row(100, 106, 110, 104, False)]
    rows[1] |= {"fleet": 103.0, "fleet:cpu": 0.0}  # no fleet model for the first one

    s = summarize(rows, "ours")

    assert s["fleet_rest_of_month_mape"] == 3.0
    assert s["fleet_forecasts"] == 1


def test_as_of_days_option_parses_and_rejects():
    assert _days("22,1,8") == (1, 8, 22)
    for bad in ("0", "32", "a,b", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            _days(bad)


def test_retrain_days_every_few_months():
    days = retrain_days(dt.date(2012, 4, 1), dt.date(2013, 1, 1), 3)
    assert days == [
        dt.date(2012, 4, 1),
        dt.date(2012, 7, 1),
        dt.date(2012, 10, 1),
        dt.date(2013, 1, 1),
    ]


def test_rest_of_month_rows_use_only_models_trained_before_the_as_of_day(tmp_path: Path):
    path = tmp_path / "m.json"
    path.write_text(toy_model().to_json())
    models = FleetModels(((dt.date(2024, 3, 1), str(path)),), seed=0, holdout=0.2)
    series = series_of(daily_kwh(130))
    tasks = rest_of_month_tasks(series, 2024, origins=(3, 20))

    rows = rest_of_month_rows(series, tasks, "london_2024", {"ours": DEFAULT_SETTINGS}, models)

    assert [r["as_of"][5:] for r in rows] == [
        f"{m:02d}-{d:02d}" for m in (1, 2, 3, 4) for d in (3, 20)
    ]
    fleet = ["fleet" in r for r in rows]  # the fleet model alone, where one was trained
    assert fleet == [False] * 4 + [True] * 4
    for r in rows:
        assert r["ours"] > 0
        assert r["actual"] > 0
        assert {"trailing_28d_mean", "same_weekday_4w_mean", "last_year_scaled"} <= set(r)
        if "fleet" in r:  # the blend's partners, to rebuild other blends from the rows
            assert r["level"] > 0
            assert "fleet:span" in r
    assert models.for_day(dt.date(2024, 2, 20)) is None
    assert models.for_day(dt.date(2024, 3, 3)) is not None


def test_bench_accuracy_monthly_needs_its_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["accuracy-monthly", "--uci", str(tmp_path / "missing.txt.gz")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_bench_accuracy_monthly_small_run_prints_the_contract(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    args = ["accuracy-monthly", "--households", "3", "--short-households", "3"]
    args += ["--fleet-blocks", "20", "--cache", str(tmp_path)]
    assert main([*args, "--as-of-days", "5,19", "--workers", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("win_rate", "coverage_80", "coverage_95", "rest_of_month_mape", "best_naive"):
        assert key in result
        assert key in result["short_history"]
    assert result["as_of_days"] == [5, 19]
    assert result["brownlee_weekly_rmse"] == pytest.approx(340.3, abs=0.5)


def test_common_shock_mape_removes_what_every_household_shares():
    # Every household's rest of month came out 10 % above its forecast: a common shock.
    rows = [
        {"household_id": h, "as_of": "2013-03-08", "actual_to_date": 70.0, "actual": 70 + 1.1 * f}
        | {"trailing_28d_mean": 70.0 + f}
        for h, f in (("a", 200.0), ("b", 230.0), ("c", 180.0))
    ]

    assert mape_table(rows, ["trailing_28d_mean"])["trailing_28d_mean"] > 5
    assert common_shock_mape(rows, "trailing_28d_mean") == pytest.approx(0.0, abs=1e-9)


def test_noise_floor_is_zero_for_a_steady_household_and_sees_alternating_weeks():
    days = 31 + 28
    steady = series_of([10.0] * days, start=dt.date(2013, 1, 1), household="a")
    weeks = [10.0 + 2.0 * ((i - 32) // 7 % 2) for i in range(days)]  # +2 from Feb 9 on, ...
    swinging = series_of(weeks, start=dt.date(2013, 1, 1), household="b")
    rows = [
        {"household_id": h, "as_of": "2013-02-01", "actual": sum(s.kwh[31:])}
        for h, s in (("a", steady), ("b", swinging))
    ]
    series = {"a": steady, "b": swinging}

    assert noise_floor_pct(rows[:1], series, 1) == 0.0
    assert noise_floor_pct(rows[:1], series, 7) == 0.0
    assert noise_floor_pct(rows[1:], series, 7) > 3.0  # weeks of 10 and 12 kWh a day
    assert noise_floor_pct(rows[1:], series, 1) < noise_floor_pct(rows[1:], series, 7)


def test_previous_blend_is_rebuilt_from_the_rows_partners():
    base = row(100, 101, 110, 104, True)
    long = base | {"history_days": 400, "fleet": 96.0, "prophet": 104.0, "level": 90.0}
    long |= {"prophet:fallback": False}
    short = base | {"history_days": 40, "fleet": 100.0, "prophet": 110.0, "level": 95.0}
    short |= {"prophet:fallback": False}
    first = base | {"history_days": 10, "fleet": 80.0, "prophet": 80.0, "level": 105.0}
    first |= {"prophet:fallback": True}

    p = previous_blend([long, short, first], "ours")

    # 0.25*96 + 0.75*104 = 102; 0.2*100 + 0.4*110 + 0.4*95 = 102; the level 105 (loses
    # to the weekday rule's 104)
    assert p["rest_of_month_mape"] == pytest.approx((2 + 2 + 5) / 3, abs=0.01)
    assert p["best_naive"] == "same_weekday_4w_mean"
    assert p["win_rate"] == pytest.approx(2 / 3, abs=0.001)
    assert previous_blend([], "ours") == {"forecasts": 0}
