"""The live-accuracy core: which steps are scored, the join with actuals, the statistics."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.gateway.core.accuracy import (
    MIN_COVERAGE,
    HorizonSums,
    HouseholdAccuracy,
    TargetForecast,
    accuracy_days,
    fleet_accuracy,
    household_accuracy,
    join,
    targets_of,
)
from services.gateway.core.consumption import MINUTES_PER_DAY, merge_minutes, minute_updates
from shared.batch import ReadingBatch, datetime_to_us
from shared.schema import Forecast, ForecastPoint

T0 = dt.datetime(2013, 3, 4, tzinfo=dt.UTC)  # a Monday, midnight UTC
HH = "MAC000002"
US = 1_000_000


def forecast(issued: dt.datetime, steps: int, resolution_s: int = 1800, kw: float = 1.0):
    return Forecast(
        household_id=HH,
        issued_at=issued,
        resolution_s=resolution_s,
        points=[
            ForecastPoint(
                timestamp=issued + dt.timedelta(seconds=i * resolution_s),
                value_kw=kw + i,
                lower_kw=kw + i - 0.5,
                upper_kw=kw + i + 0.5,
            )
            for i in range(steps)
        ],
        model_version="test",
        anomaly_score=0.0,
        anomaly=False,
    )


def target(start: dt.datetime, value: float, lower: float, upper: float, res: int = 1800):
    us = datetime_to_us(start)
    return TargetForecast("next", res, us, value, lower, upper, us)


def days_of(kw_by_day: dict[int, float | np.ndarray]) -> dict[dt.date, np.ndarray]:
    """Minute arrays of days ``T0 + i`` (a constant, or a full array)."""
    return {
        T0.date() + dt.timedelta(days=i): np.broadcast_to(v, MINUTES_PER_DAY).astype(float)
        for i, v in kw_by_day.items()
    }


def test_targets_of_day_ahead_forecast_gives_first_and_day_ahead_steps():
    (first, day_ahead) = targets_of(forecast(T0, 48))

    assert (first.horizon, first.start_us, first.value_kw) == ("next", datetime_to_us(T0), 1.0)
    assert day_ahead.horizon == "day_ahead"
    assert day_ahead.end_us - first.start_us == 86_400 * US  # ends a day after the first step
    assert (day_ahead.value_kw, day_ahead.issued_us) == (48.0, datetime_to_us(T0))


def test_targets_of_short_horizon_has_no_day_ahead():
    assert [t.horizon for t in targets_of(forecast(T0, 16, resolution_s=900))] == ["next"]


@pytest.mark.parametrize(
    ("issued", "resolution_s"),
    [(T0, 45), (T0 + dt.timedelta(seconds=30), 1800), (T0, 2 * 86_400)],
)
def test_targets_of_unscorable_steps_give_nothing(issued, resolution_s):
    assert targets_of(forecast(issued, 3, resolution_s=resolution_s)) == []


def test_accuracy_days_cover_window_and_naive():
    minutes, targets = accuracy_days(T0 + dt.timedelta(days=10, hours=5))

    assert minutes[0] == T0.date() + dt.timedelta(days=2)  # window start - 1 day for naive
    assert minutes[-1] == targets[-1] == T0.date() + dt.timedelta(days=11)
    assert targets[0] == T0.date() + dt.timedelta(days=3)


def test_join_scores_an_interval_once_enough_minutes_are_in():
    day = np.full(MINUTES_PER_DAY, np.nan)
    needed = math.ceil(MIN_COVERAGE * 30)
    day[: needed - 1] = 2.0  # slot 0: one minute short
    day[30 : 30 + needed] = 3.0  # slot 1: just enough
    targets = [target(T0, 1.0, 0, 5), target(T0 + dt.timedelta(minutes=30), 1.0, 0, 5)]

    pairs = join(targets, {T0.date(): day})

    assert [p.actual_kw for p in pairs] == [None, 3.0]
    assert [p.naive_kw for p in pairs] == [None, None]  # no day before


def test_household_accuracy_metrics_by_hand():
    # Yesterday 1 kW flat, today 2 kW then 4 kW; forecasts 2.5 and 3.0 with bands.
    today = np.full(MINUTES_PER_DAY, 2.0)
    today[30:60] = 4.0
    days = {**days_of({0: 1.0}), T0.date() + dt.timedelta(days=1): today}
    t1 = T0 + dt.timedelta(days=1)
    targets = [
        target(t1, 2.5, 2.0, 3.0),  # error +0.5, inside, naive error 1
        target(t1 + dt.timedelta(minutes=30), 3.0, 2.0, 3.5),  # error -1, outside, naive 3
    ]

    result = household_accuracy(HH, targets, days)

    assert result is not None
    m = result.horizons["next"].metrics()
    assert m.pairs == 2
    assert m.mae_kw == pytest.approx(0.75)
    assert m.rmse_kw == pytest.approx(math.sqrt((0.25 + 1) / 2))
    assert m.bias_kw == pytest.approx(-0.25)
    assert m.coverage == 0.5
    assert m.mae_seasonal_naive_kw == pytest.approx(2.0)
    assert m.mase == pytest.approx(0.75 / 2.0)
    assert m.mean_interval_width_kw == pytest.approx(1.25)
    assert result.horizons["day_ahead"].pairs == 0
    assert result.window_end == T0 + dt.timedelta(days=2)
    assert result.resolutions_s == [1800]
    assert result.last_scored_at == t1 + dt.timedelta(hours=1)


def test_household_accuracy_window_is_seven_days_before_newest_minute():
    days = days_of(dict.fromkeys(range(10), 1.0))
    old = target(T0 + dt.timedelta(days=2), 5.0, 0, 9)  # before the window
    recent = target(T0 + dt.timedelta(days=9, hours=23), 1.5, 0, 9)

    result = household_accuracy(HH, [old, recent], days)

    assert result is not None
    assert result.window_start == T0 + dt.timedelta(days=3)
    assert result.horizons["next"].pairs == 1
    assert result.horizons["next"].abs_error == pytest.approx(0.5)


def test_household_accuracy_without_readings_is_none():
    assert household_accuracy(HH, [target(T0, 1, 0, 2)], {}) is None


def test_household_accuracy_flat_naive_has_no_mase():
    result = household_accuracy(
        HH, [target(T0 + dt.timedelta(days=1), 2, 0, 3)], days_of({0: 1.0, 1: 1.0})
    )

    assert result is not None
    assert result.horizons["next"].metrics().mase is None  # naive is perfect: undefined


def _row(household: str, end: dt.datetime, abs_error: float, naive: float) -> HouseholdAccuracy:
    sums = HorizonSums(
        pairs=2,
        abs_error=abs_error,
        squared_error=abs_error,
        error=0.0,
        inside=1,
        width=2.0,
        naive_pairs=2,
        naive_abs_error=naive,
        paired_abs_error=abs_error,
    )
    return HouseholdAccuracy(
        household_id=household,
        window_start=end - dt.timedelta(days=7),
        window_end=end,
        horizons={"next": sums, "day_ahead": HorizonSums()},
        resolutions_s=[1800],
    )


def test_fleet_accuracy_pools_households_and_leaves_out_quiet_ones():
    end = T0 + dt.timedelta(days=30)
    rows = [
        _row("a", end, abs_error=1.0, naive=2.0),  # MASE 0.5
        _row("b", end - dt.timedelta(days=1), abs_error=3.0, naive=2.0),  # MASE 1.5
        _row("c", end, abs_error=1.0, naive=4.0),  # MASE 0.25
        _row("quiet", end - dt.timedelta(days=8), abs_error=100.0, naive=1.0),
    ]

    fleet = fleet_accuracy(rows)

    assert (fleet.households, fleet.stale_households, fleet.newest_window_end) == (3, 1, end)
    nxt = fleet.horizons["next"]
    assert nxt.households == 3
    assert nxt.pooled.pairs == 6
    assert nxt.pooled.mae_kw == pytest.approx(5.0 / 6)
    assert nxt.pooled.mase == pytest.approx(5.0 / 8.0)
    assert nxt.mean_household_mase == pytest.approx((0.5 + 1.5 + 0.25) / 3)
    assert nxt.median_household_mase == 0.5
    assert nxt.share_beating_naive == pytest.approx(2 / 3)
    assert fleet.horizons["day_ahead"].pooled.pairs == 0


def test_fleet_accuracy_of_nobody():
    fleet = fleet_accuracy([])

    assert (fleet.households, fleet.newest_window_end) == (0, None)
    assert fleet.horizons["next"].pooled.mae_kw is None


# ---------------------------------------------------------------- order independence

SLOTS = 3 * 48  # three days of half-hours


@st.composite
def deliveries(draw):
    """Readings (half-hourly energy) and forecasts of three days, as delivered units."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    present = rng.random(SLOTS) < 0.9
    kw = rng.gamma(2.0, 0.4, SLOTS).round(3)
    units = []
    for slot in np.flatnonzero(present):
        stamp = datetime_to_us(T0) + int(slot) * 1800 * US
        units.append(("reading", int(slot), float(kw[slot]), stamp))
    issued = rng.random(SLOTS) < 0.8
    for slot in np.flatnonzero(issued):
        start = T0 + dt.timedelta(minutes=30 * int(slot))
        units.append(("forecast", int(slot), float(kw[slot] * rng.uniform(0.7, 1.3)), start))
    order = draw(st.permutations(range(len(units))))
    duplicates = draw(st.lists(st.integers(0, len(units) - 1), max_size=20))
    return units, [units[i] for i in list(order) + duplicates]


def _apply(units) -> HouseholdAccuracy | None:
    """Apply units in the given order, as the consumers' stores would (keyed merges)."""
    days: dict[dt.date, np.ndarray] = {}
    targets: dict[tuple[str, int, int], TargetForecast] = {}
    for kind, _, value, when in units:
        if kind == "reading":
            batch = ReadingBatch(
                HH,
                np.array([when]),
                {"energy_kwh": np.array([value / 2]), "interval_s": np.array([1800.0])},
            )
            for key, update in minute_updates(batch).items():
                days[key.day], _ = merge_minutes(days.get(key.day), update)
        else:
            f = forecast(when, 48, kw=value)
            for t in targets_of(f):
                targets[t.key] = t
    return household_accuracy(HH, list(targets.values()), days)


#: Generation and shrinking speed depend on the machine, never a failure.
SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]


@settings(deadline=None, max_examples=40, suppress_health_check=SLOW_OK)
@given(deliveries())
def test_household_accuracy_same_under_any_order_and_duplicates(case):
    in_order, delivered = case

    assert _apply(delivered) == _apply(in_order)
