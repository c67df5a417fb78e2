"""Anomaly detector core: each kind with its size and duration, rare on normal data,
deterministic however the bins are split."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest

from bench.anomalies import LCL_FILE, lcl_series
from services.realtime.core.anomaly import (
    DEFAULT_THRESHOLD,
    KINDS,
    AnomalyConfig,
    AnomalyState,
    detect,
    detect_series,
)
from tests.conftest import DATA_DIR

HALF_HOUR = 1800
PER_DAY = 48
FIRST_BIN = 20_000 * PER_DAY  # a midnight (2024-10-04)
CONFIG = AnomalyConfig()
LCL = DATA_DIR / LCL_FILE


def household(days: int = 14, seed: int = 3) -> np.ndarray:
    """A household's half-hourly kW: a daily shape (night 0.2, evening 0.9 kW) + noise."""
    rng = np.random.default_rng(seed)
    hours = (np.arange(days * PER_DAY) % PER_DAY) / 2
    shape = 0.2 + 0.3 * ((hours >= 7) & (hours < 9)) + 0.7 * ((hours >= 17) & (hours < 22))
    return np.maximum(shape + rng.gamma(2.0, 0.04, len(hours)) - 0.05, 0.01)


def run(values: np.ndarray):
    return detect_series(values[None, :], FIRST_BIN, HALF_HOUR, CONFIG)


def flagged(verdicts) -> list[int]:
    return np.flatnonzero(verdicts.flag).tolist()


INJECT_AT = 10 * PER_DAY + 20  # day 10, 10:00


def test_detector_normal_household_is_not_flagged():
    verdicts = run(household())
    assert flagged(verdicts) == []
    assert np.isnan(verdicts.expected_kw[:PER_DAY]).all()  # no verdict without reference
    assert not np.isnan(verdicts.expected_kw[8 * PER_DAY :]).any()


def test_detector_excess_says_excess_with_its_energy_and_duration():
    values = household()
    values[INJECT_AT : INJECT_AT + 8] += 1.5  # 4 h, 6 kWh extra

    verdicts = run(values)

    hits = flagged(verdicts)
    assert hits
    assert min(hits) >= INJECT_AT
    assert max(hits) < INJECT_AT + 8
    last = hits[-1]
    assert KINDS[verdicts.kind[last]] == "excess"
    run_bins = verdicts.duration_s[last] // HALF_HOUR
    assert last - run_bins + 1 == INJECT_AT  # the run starts where the excess started
    assert verdicts.start_us[last] == (FIRST_BIN + INJECT_AT) * HALF_HOUR * 1_000_000
    assert verdicts.kwh[last] == pytest.approx(1.5 * run_bins / 2, rel=0.1)


def test_detector_stuck_at_zero_says_stuck_zero_with_the_missing_energy():
    values = household()
    values[INJECT_AT : INJECT_AT + 12] = 0.0  # 6 h

    verdicts = run(values)

    hits = flagged(verdicts)
    assert hits
    assert min(hits) >= INJECT_AT
    assert max(hits) < INJECT_AT + 12
    last = hits[-1]
    assert KINDS[verdicts.kind[last]] == "stuck_zero"
    assert verdicts.duration_s[last] == (last - INJECT_AT + 1) * HALF_HOUR
    expected = verdicts.expected_kw[INJECT_AT : last + 1].sum() / 2
    assert verdicts.kwh[last] == pytest.approx(-expected)


def test_detector_spike_says_spike_for_one_bin():
    values = household()
    values[INJECT_AT] += 6.0  # 3 kWh in one half hour

    verdicts = run(values)

    assert flagged(verdicts) == [INJECT_AT]
    assert KINDS[verdicts.kind[INJECT_AT]] == "spike"
    assert verdicts.duration_s[INJECT_AT] == HALF_HOUR
    assert verdicts.kwh[INJECT_AT] == pytest.approx(
        (values[INJECT_AT] - verdicts.expected_kw[INJECT_AT]) / 2
    )


def test_detector_persistent_step_becomes_a_level_shift_then_the_new_normal():
    values = household(days=24)
    values[INJECT_AT:] += 1.0

    verdicts = run(values)

    hits = flagged(verdicts)
    assert hits
    assert min(hits) >= INJECT_AT
    kinds = {KINDS[k] for k in verdicts.kind[hits]}
    assert kinds <= {"excess", "level_shift"}
    assert "level_shift" in kinds
    shift = [i for i in hits if KINDS[verdicts.kind[i]] == "level_shift"]
    assert verdicts.duration_s[shift[0]] >= CONFIG.shift_s
    assert max(hits) < INJECT_AT + 2 * PER_DAY  # a day later it is no longer news


def test_detector_drop_in_consumption_is_a_deficit():
    cut = household(seed=5)
    start = 10 * PER_DAY + 34  # 17:00, the evening peak
    cut[start : start + 10] = 0.1  # 5 h at 0.1 kW instead of ~0.9

    verdicts = run(cut)

    hits = flagged(verdicts)
    assert hits
    assert min(hits) >= start
    assert max(hits) < start + 10
    assert KINDS[verdicts.kind[hits[-1]]] == "deficit"
    assert verdicts.kwh[hits[-1]] < -1.0


def test_detector_fifteen_minute_meter_is_flagged_when_a_half_hourly_one_is():
    """The CUSUMs add evidence per half hour, not per bin: the same lasting excess is
    flagged after the same time at 15 minutes (each half hour read as two bins)."""
    values = household()
    values[INJECT_AT : INJECT_AT + 8] += 1.5  # 4 h
    half = flagged(run(values))
    quarter = flagged(detect_series(np.repeat(values, 2)[None, :], 2 * FIRST_BIN, 900, CONFIG))
    assert half
    assert quarter
    first_half_s = (half[0] - INJECT_AT + 1) * HALF_HOUR  # seconds into the excess
    first_quarter_s = (quarter[0] - 2 * INJECT_AT + 1) * 900
    assert abs(first_quarter_s - first_half_s) <= 900


def test_detector_compares_a_high_bin_with_the_same_slot_a_week_earlier():
    """A household's Saturday is measured against last Saturday too, not only against
    the weekdays' median."""
    values = household(days=21)
    slots = np.arange(20, 32)  # 10:00-16:00
    for day in (7, 14):
        values[day * PER_DAY + slots] += 1.0
    verdicts = run(values)
    at = 14 * PER_DAY + slots
    usual = np.median(household(days=21)[7 * PER_DAY + slots])
    assert np.median(verdicts.expected_kw[at]) == pytest.approx(usual + 1.0, abs=0.15)
    assert not verdicts.flag[at].any()


def test_detector_missing_bins_are_never_flagged_and_change_nothing():
    values = household()
    values[INJECT_AT : INJECT_AT + 6] = np.nan

    verdicts = run(values)

    assert flagged(verdicts) == []
    assert (verdicts.score[INJECT_AT : INJECT_AT + 6] == 0).all()


def test_detector_same_verdicts_however_the_bins_are_split():
    values = household()
    values[INJECT_AT : INJECT_AT + 8] += 1.5
    whole = run(values)

    state = AnomalyState.fresh(HALF_HOUR, CONFIG)
    parts = []
    for chunk in np.array_split(np.arange(len(values)), 7):
        [state], verdicts = detect(
            CONFIG, [state], np.zeros(len(chunk), np.int64), FIRST_BIN + chunk, values[chunk]
        )
        parts.append(verdicts)

    for name in ("score", "flag", "kind", "kwh", "duration_s", "start_us"):
        assert np.array_equal(
            np.concatenate([getattr(p, name) for p in parts]), getattr(whole, name)
        )


def test_detector_redelivered_bin_is_ignored():
    values = household()
    state = AnomalyState.fresh(HALF_HOUR, CONFIG)
    bins = FIRST_BIN + np.arange(len(values))
    [state], _ = detect(CONFIG, [state], np.zeros(len(values), np.int64), bins, values)

    [again], verdicts = detect(CONFIG, [state], np.array([0]), bins[-1:], np.array([9.0]))

    assert not verdicts.flag.any()
    assert np.array_equal(again.ring, state.ring, equal_nan=True)


def test_detector_many_households_at_once_match_one_by_one():
    a, b = household(seed=1), household(seed=2)
    b[INJECT_AT] += 6.0
    together = detect_series(np.stack([a, b]), FIRST_BIN, HALF_HOUR, CONFIG)
    alone = [run(a), run(b)]
    assert np.array_equal(together.kind, np.concatenate([v.kind for v in alone]))
    assert np.array_equal(together.score, np.concatenate([v.score for v in alone]))


def test_detector_threshold_flags_exactly_the_scores_above_it():
    values = household()
    values[INJECT_AT : INJECT_AT + 8] += 1.5
    scores = run(values).score
    for threshold in (0.5, 1.0, 2.0):
        config = dataclasses.replace(CONFIG, threshold=threshold)
        flags = detect_series(values[None, :], FIRST_BIN, HALF_HOUR, config).flag
        assert np.array_equal(flags, scores > threshold)


def _london(households: slice, start: str, end: str) -> tuple[np.ndarray, int]:
    """Real London half-hourly kW from the shared data (skipped, loudly, without it)."""
    if not LCL.exists():
        pytest.skip(f"London half-hourly file not found at {LCL} (set WATTSTREAM_DATA_DIR)")
    _, values, first = lcl_series(LCL)
    begin = int(dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC).timestamp()) // HALF_HOUR
    stop = int(dt.datetime.fromisoformat(end).replace(tzinfo=dt.UTC).timestamp()) // HALF_HOUR
    return values[households, begin - first : stop - first], begin


def _normal_flag_rate(values: np.ndarray, first: int) -> float:
    verdicts = detect_series(values, first, HALF_HOUR)
    scored = ~np.isnan(verdicts.expected_kw)
    assert scored.mean() > 0.8
    return float(verdicts.flag[scored].mean())


def test_detector_real_london_slice_flags_at_most_one_percent():
    """20 real households, April to June 2013, untouched."""
    values, first = _london(slice(0, 20), "2013-04-01", "2013-07-01")
    assert _normal_flag_rate(values, first) <= 0.01


@pytest.mark.slow
def test_detector_real_london_year_flags_at_most_one_percent():
    """All 100 real households, the whole of 2013, untouched."""
    values, first = _london(slice(None), "2013-01-01", "2014-01-01")
    assert _normal_flag_rate(values, first) <= 0.01


def test_detector_config_rejects_nonsense():
    with pytest.raises(ValueError, match="threshold"):
        AnomalyConfig(threshold=0)
    with pytest.raises(ValueError, match="cusum_pace_s"):
        AnomalyConfig(cusum_pace_s=0)
    with pytest.raises(ValueError, match="divide a day"):
        AnomalyState.fresh(7 * 60 + 1, CONFIG)
    assert AnomalyConfig().threshold == DEFAULT_THRESHOLD
