"""The backtests on the real data (slow: they need ../shared/data)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from services.monthly.adapters.datasets import lcl_blocks, uci_daily_kw_minutes
from services.monthly.core.backtest import brownlee_weeks, rmse, week_one_year_ago
from services.monthly.core.forecast import point_forecast
from services.monthly.core.series import DailySeries
from services.monthly.fleet import run_fleet
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def uci_daily(full_uci):
    return uci_daily_kw_minutes(full_uci)


def test_brownlee_daily_sums_reproduce_his_naive_reference(uci_daily):
    days, sums, _ = uci_daily
    _, tasks = brownlee_weeks(days, sums)

    predicted = np.concatenate([week_one_year_ago(t.history) for t in tasks])
    actual = np.concatenate([t.target for t in tasks])

    assert rmse(actual, predicted) == pytest.approx(465.294, abs=0.001)  # kW*min units


def test_brownlee_weekly_protocol_our_model_beats_the_goal(uci_daily):
    days, sums, _ = uci_daily
    axis, tasks = brownlee_weeks(days, sums)
    predictions, warm = [], None
    for task in tasks:
        history = DailySeries.from_arrays(
            "uci-sceaux", axis[: len(task.history)], task.history, np.ones(len(task.history))
        )
        values, warm, reason = point_forecast(
            history, task.first_day - dt.timedelta(days=1), 7, warm_start=warm
        )
        assert reason is None
        predictions.append(values)

    score = rmse(np.concatenate([t.target for t in tasks]), np.concatenate(predictions))

    assert score < 360.0  # references: AR(7) 381.6, ConvLSTM 367.9


def test_run_fleet_on_two_real_blocks(tmp_path):
    folder = tmp_path / "lcl"
    folder.mkdir()
    for path in lcl_blocks(DATA_DIR / "lcl_daily_dataset")[:2]:
        (folder / path.name).symlink_to(path)

    report = run_fleet(folder, tmp_path / "out", workers=2, as_of=dt.date(2014, 2, 14))

    assert report.households == 100
    assert report.failed == {}
    assert report.prophet + report.fallbacks == 100
    assert len(list((tmp_path / "out" / "results").rglob("*.json"))) == report.households - (
        report.fallbacks_by_reason.get("no_data", 0)
    )
