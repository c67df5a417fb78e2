"""Backtest protocols: Brownlee's windows (no leakage), daily sums, rest-of-month tasks."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from services.monthly.core.backtest import (
    BROWNLEE_FIRST_DAY,
    ar_forecast,
    brownlee_daily_sums,
    brownlee_weeks,
    rest_of_month_tasks,
    same_dates_last_year,
    same_weekdays_last_year,
    trailing_mean,
    week_one_year_ago,
)
from services.monthly.core.series import DailySeries
from tests.services.monthly.fakes import series_of

D = dt.date
MINUTE = 60_000_000


def test_brownlee_daily_sums_fill_gaps_from_the_day_before():
    start = 1_000 * 1440 * MINUTE  # a midnight
    minutes = np.arange(2 * 1440)
    values = np.where(minutes < 1440, 1.0, 2.0)
    gap = (minutes >= 1440) & (minutes < 1440 + 60)  # the first hour of day 2 is missing
    ts = start + minutes[~gap] * MINUTE

    days, sums, coverage = brownlee_daily_sums(ts, values[~gap], start + minutes[gap] * MINUTE)

    assert len(days) == 2
    assert sums.tolist() == [1440.0, 60 * 1.0 + 1380 * 2.0]  # kW*min, gap from day 1
    assert coverage.tolist() == [1.0, 1.0]


def brownlee_days() -> tuple[np.ndarray, np.ndarray]:
    days = np.arange(np.datetime64("2006-12-16"), np.datetime64("2010-11-27"))
    return days, np.arange(len(days), dtype=float)  # value = day index: leakage shows


def test_brownlee_weeks_walk_forward_without_leakage():
    days, values = brownlee_days()

    axis, tasks = brownlee_weeks(days, values)

    assert axis[0] == np.datetime64(BROWNLEE_FIRST_DAY)
    assert len(tasks) == 46
    assert tasks[0].first_day == D(2010, 1, 3)
    assert tasks[0].first_day.weekday() == 6
    assert tasks[-1].first_day + dt.timedelta(days=6) == D(2010, 11, 20)
    for task in tasks:
        first = (task.first_day - D(2006, 12, 16)).days
        assert task.history[-1] == first - 1  # the day before the week, and nothing later
        assert task.history[0] == 1  # data[1:]: from 2006-12-17
        assert task.target.tolist() == list(range(first, first + 7))


def test_brownlee_baselines():
    history = np.arange(400, dtype=float)

    assert week_one_year_ago(history).tolist() == list(range(36, 43))
    ar = ar_forecast(np.sin(np.arange(300) * 2 * np.pi / 7) + 5)
    np.testing.assert_allclose(ar, np.sin(np.arange(300, 307) * 2 * np.pi / 7) + 5, atol=1e-6)


def test_rest_of_month_tasks_only_for_complete_months_and_cut_at_the_as_of_day():
    series = series_of(np.full(500, 10.0), start=D(2012, 12, 1))
    kwh = series.kwh.copy()
    kwh[series.index_of(D(2013, 3, 5))] = np.nan  # March is incomplete
    series = DailySeries(series.household_id, series.start, kwh, series.coverage)

    tasks = rest_of_month_tasks(series, 2013)

    months = sorted({t.as_of.month for t in tasks})
    assert months == [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert [t.as_of.day for t in tasks[:4]] == [1, 8, 15, 22]
    first = tasks[0]
    assert (first.actual_to_date, first.actual_total, first.days_left) == (10.0, 310.0, 30)
    assert first.history(series).end == first.as_of


def test_rest_of_month_tasks_skip_near_zero_months():
    tasks = rest_of_month_tasks(series_of(np.full(400, 0.1), start=D(2013, 1, 1)), 2013)

    assert tasks == []


def test_naive_rest_of_month_baselines():
    start = D(2012, 1, 1)
    kwh = [float(i % 7 == 0) * 7 + (1.0 if i < 366 else 2.0) for i in range(500)]
    series = series_of(kwh, start=start)
    as_of = D(2013, 3, 10)
    history = series.until(as_of)

    assert trailing_mean(history, as_of, 21) == pytest.approx(21 * (2.0 + 7 * 4 / 28))
    dates, ok = same_dates_last_year(history, as_of, 21)
    weekdays, ok2 = same_weekdays_last_year(history, as_of, 21)
    assert ok
    assert ok2
    assert dates == pytest.approx(21 * 1.0 + 7 * 3)
    assert weekdays == pytest.approx(21 * 1.0 + 7 * 3)
    young = series.between(D(2012, 12, 1), as_of)
    assert same_dates_last_year(young, as_of, 21) == (trailing_mean(young, as_of, 21), False)
