"""Window state: event-time steps, gaps, late data, restart, and training's binning."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.realtime.core.features import MEASUREMENTS, TARGET
from services.realtime.core.window import (
    Rows,
    StateDecodeError,
    WindowConfig,
    WindowState,
    advance,
    advance_one,
)
from services.realtime.model.data import load_uci_bins
from shared.batch import ReadingBatch, datetime_to_us
from tests.conftest import APRIL_2007

MINUTE_US = 60_000_000
BIN_US = 900 * 1_000_000
T0 = datetime_to_us(dt.datetime(2007, 4, 2, tzinfo=dt.UTC))  # a bin boundary
POWER_ONLY = WindowConfig(900, 4, measurements=(TARGET,))  # max gap 2 h = 8 bins


def minutes(
    start_min: int, count: int, power: float | np.ndarray = 1.0, household: str = "h1"
) -> ReadingBatch:
    """Minute readings of the target from ``T0 + start_min``."""
    stamps = T0 + (start_min + np.arange(count)) * MINUTE_US
    values = np.broadcast_to(np.asarray(power, dtype=float), (count,)).copy()
    return ReadingBatch(household, stamps, {TARGET: values})


def run(config: WindowConfig, *batches: ReadingBatch) -> tuple[WindowState, list]:
    """Feed batches one after another; returns the state and every step's result."""
    state = WindowState.fresh(batches[0].household_id, config)
    done = []
    for batch in batches:
        state, result = advance_one(config, state, batch)
        done.append(result)
    return state, done


def find(results: list, step_us: int) -> tuple:
    """The result holding the step issued at ``step_us``, and the step's index in it."""
    for result in results:
        hits = np.flatnonzero(result.step_bins * BIN_US == step_us)
        if len(hits):
            return result, int(hits[0])
    raise AssertionError(f"no step at {step_us}")


def step_window(results: list, step_us: int) -> np.ndarray:
    """The window of the step issued at ``step_us`` (the first forecast bin start)."""
    result, i = find(results, step_us)
    return result.windows[i, :, 0]


def complete(results: list, step_us: int) -> bool:
    """Whether that step's window can be forecast: no NaN and its last bin known."""
    result, i = find(results, step_us)
    return bool(result.end_known[i] and not np.isnan(result.windows[i]).any())


# ----------------------------------------------------------------------- event-time steps


def test_window_step_completes_only_when_a_reading_enters_a_later_bin():
    state, (first,) = run(POWER_ONLY, minutes(0, 15))  # 00:00 .. 00:14, one bin
    assert len(first.step_bins) == 0
    assert state.head_us == T0

    state, second = advance_one(POWER_ONLY, state, minutes(15, 1))  # 00:15: a later bin

    assert second.step_bins.tolist() == [(T0 + BIN_US) // BIN_US]
    assert second.actuals.tolist() == [1.0]  # the completed bin 00:00-00:15
    assert state.head_us == T0 + BIN_US


def test_window_readings_arriving_out_of_order_in_one_bin_complete_nothing():
    state, _ = run(POWER_ONLY, minutes(0, 20))
    state, result = advance_one(POWER_ONLY, state, minutes(16, 3))  # same open bin again

    assert len(result.step_bins) == 0
    assert state.head_us == T0 + BIN_US


def test_window_windows_hold_the_input_steps_bins_before_the_step():
    power = np.repeat([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 15)
    _, results = run(POWER_ONLY, minutes(0, 90, power), minutes(90, 1))

    assert step_window(results, T0 + 6 * BIN_US).tolist() == [3.0, 4.0, 5.0, 6.0]
    assert complete(results, T0 + 6 * BIN_US)


def test_window_bin_with_too_few_readings_is_missing():
    # 7 of 15 minutes is below MIN_BIN_COVERAGE (8 needed)
    _, (_, result) = run(POWER_ONLY, minutes(0, 7), minutes(15, 1))
    assert np.isnan(result.actuals).all()
    assert not result.end_known.any()


# ---------------------------------------------------------------------------------- gaps


def test_window_short_gap_is_interpolated_like_training():
    # bins 0..9 at 1, 2, ..., 10 kW; bins 4 and 5 lost (30 minutes)
    power = np.repeat(np.arange(1.0, 11.0), 15)
    kept = np.r_[0:60, 90:150]
    batch = minutes(0, 150, power)
    _, results = run(POWER_ONLY, batch.take(kept), minutes(150, 1))

    window = step_window(results, T0 + 8 * BIN_US)  # bins 4..7
    assert window.tolist() == pytest.approx([5.0, 6.0, 7.0, 8.0])
    assert complete(results, T0 + 8 * BIN_US)


def test_window_long_gap_gives_incomplete_windows_until_it_has_passed():
    # 3 hours (12 bins) lost: longer than the 2 h interpolation limit
    power = np.ones(60 * 10)
    kept = np.r_[0:120, 300:600]
    _, results = run(POWER_ONLY, minutes(0, 600, power).take(kept), minutes(600, 1))

    assert complete(results, T0 + 8 * BIN_US)  # window 4..7: before the gap (bins 8..19)
    assert not any(complete(results, T0 + k * BIN_US) for k in range(9, 24))
    assert complete(results, T0 + 24 * BIN_US)  # window 20..23: after the gap


def test_window_missing_last_bin_is_never_extrapolated():
    power = np.ones(60 * 4)
    kept = np.r_[0:200]  # bins 0..12 known, 13..15 lost
    state, _ = run(POWER_ONLY, minutes(0, 240, power).take(kept))
    _, result = advance_one(POWER_ONLY, state, minutes(240, 1))  # step 16

    last = len(result.step_bins) - 1
    assert result.step_bins[last] * BIN_US == T0 + 16 * BIN_US
    assert not result.end_known[last]


# ----------------------------------------------------------------------------- late data


def test_window_late_reading_updates_its_bin_while_it_is_kept():
    on_time = minutes(0, 120).take(np.arange(120) != 80)  # 00:00 .. 01:59, 01:20 missing
    state, _ = run(POWER_ONLY, on_time)
    late = minutes(80, 1, power=16.0)  # 01:20 arrives after 01:59: bin 5 = 30 / 15
    state, result = advance_one(POWER_ONLY, state, ReadingBatch.concat([late, minutes(120, 1)]))

    assert result.late_ignored.tolist() == [0]
    assert step_window([result], T0 + 8 * BIN_US).tolist() == [1.0, 2.0, 1.0, 1.0]  # bins 4..7
    bin5 = T0 // BIN_US + 5 - (state.head - POWER_ONLY.history_bins)
    assert (state.sums[bin5, 0], state.counts[bin5, 0]) == (30.0, 15)


def test_window_reading_sent_twice_counts_once():
    state, _ = run(POWER_ONLY, minutes(0, 120))
    again = minutes(80, 1, power=16.0)  # 01:20 resent (another record), and within one batch
    state, result = advance_one(POWER_ONLY, state, ReadingBatch.concat([again, minutes(120, 2)]))
    _, twice = advance_one(
        POWER_ONLY, WindowState.fresh("h1", POWER_ONLY), ReadingBatch.concat([minutes(0, 3)] * 2)
    )

    assert result.duplicates.tolist() == [1]
    assert twice.duplicates.tolist() == [3]
    assert step_window([result], T0 + 8 * BIN_US).tolist() == [1.0, 1.0, 1.0, 1.0]
    bin8 = state.history_bins  # the open bin: 02:00 and 02:01 once each
    assert state.counts[bin8, 0] == 2


def test_window_reading_older_than_the_history_is_counted_and_ignored():
    state, _ = run(POWER_ONLY, minutes(0, 60 * 24))  # a day: history is 13 bins
    before = state.sums.copy()
    state, result = advance_one(POWER_ONLY, state, minutes(0, 1, power=50.0))  # a day late

    assert result.late_ignored.tolist() == [1]
    assert state.late_ignored == 1
    np.testing.assert_array_equal(state.sums, before)
    assert len(result.step_bins) == 0


def test_window_catch_up_keeps_only_the_newest_steps():
    config = WindowConfig(900, 4, measurements=(TARGET,), max_catch_up_steps=10)
    state, _ = run(config, minutes(0, 60))
    _, result = advance_one(config, state, minutes(60, 60 * 5))  # 20 new steps

    assert len(result.step_bins) == 10
    assert result.superseded.tolist() == [10]
    assert result.step_bins[-1] * BIN_US == T0 + 23 * BIN_US


# ------------------------------------------------------------------------------- restart


def assert_same_state(a: WindowState, b: WindowState) -> None:
    np.testing.assert_array_equal(a.sums, b.sums)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.forecast, b.forecast)
    for name in ("head", "first", "last_ts_us", "position", "late_ignored", "mode"):
        assert getattr(a, name) == getattr(b, name), name


def test_window_state_bytes_round_trip_bit_exact(april):
    config = WindowConfig(900, 96)
    state, _ = advance_one(config, WindowState.fresh("uci-sceaux", config), april.slice(0, 5000))
    state = state.replace(
        position=49590338271490256608559692538361571095921575989136588802,  # > 64 bits
        forecast=np.array([[0.5, 1.0, 1.5], [0.25, 1.0 / 3, 2.0]]),
        forecast_start_us=T0,
        forecast_resolution_s=900,
        fallback_reason=None,
    )

    restored = WindowState.from_bytes(state.to_bytes())

    assert_same_state(restored, state)
    assert restored.measurements == MEASUREMENTS
    assert restored.forecast_start_us == T0


def test_window_state_bytes_stay_small_for_the_streaming_model(april):
    config = WindowConfig(900, 96)  # one day of 15-minute bins, all seven measurements
    state, _ = advance_one(config, WindowState.fresh("uci-sceaux", config), april.slice(0, 5000))
    assert len(state.to_bytes()) < 20_000  # DynamoDB items may hold 400 KB


def days(batch: ReadingBatch) -> list[ReadingBatch]:
    """One record per day, as the readings are published."""
    return [batch.slice(start, start + 1440) for start in range(0, len(batch), 1440)]


def test_window_restart_continues_exactly_where_it_stopped(april):
    config = WindowConfig(900, 96)
    records = days(april.slice(0, 10 * 1440))
    straight = WindowState.fresh("uci-sceaux", config)
    expected = []
    for record in records:
        straight, result = advance_one(config, straight, record)
        expected.append(result.windows)

    state = WindowState.fresh("uci-sceaux", config)
    windows = []
    for record in records:  # a restart (state to bytes and back) before every record
        state, result = advance_one(config, WindowState.from_bytes(state.to_bytes()), record)
        windows.append(result.windows)

    assert_same_state(state, straight)
    np.testing.assert_array_equal(np.concatenate(windows), np.concatenate(expected))


@pytest.mark.parametrize(
    "data",
    [b"", b"WSWS", b"not a state at all", b"WSWS\x02\x00\x00\x00\x00"],
    ids=["empty", "truncated", "garbage", "future-version"],
)
def test_window_state_from_bytes_refuses_anything_else(data):
    with pytest.raises(StateDecodeError):
        WindowState.from_bytes(data)


def test_window_state_from_bytes_refuses_a_corrupt_payload():
    data = bytearray(WindowState.fresh("h1", POWER_ONLY).to_bytes())
    data[-3] ^= 0xFF
    with pytest.raises(StateDecodeError):
        WindowState.from_bytes(bytes(data))


# ------------------------------------------------------------- same numbers as training


def test_window_bins_equal_the_training_bins_on_real_data(april):
    """Every complete streaming window equals the training series' rows for that step."""
    config = WindowConfig(900, 96)
    state = WindowState.fresh("uci-sceaux", config)
    steps, windows = [], []
    for record in days(april):
        state, result = advance_one(config, state, record)
        ok = result.end_known & ~np.isnan(result.windows).any(axis=(1, 2))
        steps.extend((result.step_bins[ok] * BIN_US).tolist())
        windows.append(result.windows[ok])
    streamed = np.concatenate(windows)

    series = load_uci_bins(APRIL_2007, 900)
    rows = series.features()[:, : len(MEASUREMENTS)]
    index = np.searchsorted(series.starts_us, steps)
    expected = rows[index[:, None] - 96 + np.arange(96)]

    assert len(steps) > 2000
    np.testing.assert_allclose(streamed, expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------ batching across households


def test_window_advance_many_households_equals_one_at_a_time():
    config = POWER_ONLY
    a = minutes(0, 200, np.linspace(0.5, 3.0, 200), household="a")
    b = minutes(30, 100, 2.0, household="b")
    states = [WindowState.fresh("a", config), WindowState.fresh("b", config)]

    together = advance(config, states, Rows.from_batches([(0, a), (1, b)], config.measurements))
    alone_a = advance_one(config, states[0], a)[1]
    alone_b = advance_one(config, states[1], b)[1]

    np.testing.assert_array_equal(
        together.windows, np.concatenate([alone_a.windows, alone_b.windows])
    )
    assert together.step_household.tolist() == [0] * len(alone_a.step_bins) + [1] * len(
        alone_b.step_bins
    )
    assert_same_state(together.states[0], advance_one(config, states[0], a)[0])


def test_window_advance_needs_rows_for_every_state():
    states = [WindowState.fresh("a", POWER_ONLY), WindowState.fresh("b", POWER_ONLY)]
    with pytest.raises(ValueError, match="at least one row"):
        advance(POWER_ONLY, states, Rows.from_batches([(0, minutes(0, 5))], (TARGET,)))


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=899), max_size=6, unique=True))
def test_window_how_readings_are_split_into_deliveries_does_not_matter(cuts):
    """In-order readings give the same windows and state whatever the delivery sizes."""
    rng = np.random.default_rng(5)
    power = rng.gamma(2.0, 0.5, 900)
    keep = np.ones(900, dtype=bool)
    keep[200:230] = keep[400:700] = False  # a short and a long gap
    batch = minutes(0, 900, power).take(keep)
    bounds = [0, *sorted(c for c in cuts if c < len(batch)), len(batch)]
    pieces = [batch.slice(a, b) for a, b in itertools.pairwise(bounds) if b > a]

    whole_state, (whole,) = run(POWER_ONLY, batch)
    state, results = run(POWER_ONLY, *pieces)

    assert_same_state(state, whole_state)
    steps = np.concatenate([r.step_bins for r in results])
    assert steps.tolist() == whole.step_bins.tolist()
    split_ok = np.concatenate(
        [r.end_known & ~np.isnan(r.windows).any(axis=(1, 2)) for r in results]
    )
    whole_ok = whole.end_known & ~np.isnan(whole.windows).any(axis=(1, 2))
    np.testing.assert_array_equal(split_ok, whole_ok)
    split_windows = np.concatenate([r.windows for r in results])
    np.testing.assert_array_equal(split_windows[split_ok], whole.windows[whole_ok])  # bit for bit
