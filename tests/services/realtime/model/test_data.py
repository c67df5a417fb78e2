"""Binning the UCI file onto a regular grid, the gap policy and window selection."""

from __future__ import annotations

import numpy as np
import pytest

from services.realtime.core.features import MEASUREMENTS, bin_sums
from services.realtime.model.data import (
    BinnedSeries,
    bin_series,
    load_uci_bins,
    window_starts,
)
from shared.batch import ReadingBatch
from tests.conftest import APRIL_2007

MINUTE_US = 60_000_000


def test_bin_series_merges_a_bin_split_across_chunks() -> None:
    def chunk(minutes: list[int], power: list[float]) -> ReadingBatch:
        stamps = np.array(minutes, dtype=np.int64) * MINUTE_US
        columns = {name: np.full(len(minutes), 1.0) for name in MEASUREMENTS}
        columns["global_active_power_kw"] = np.array(power)
        return ReadingBatch("h", stamps, columns)

    first = chunk(list(range(0, 10)), [1.0] * 10)  # minutes 0-9 of bin 0
    second = chunk([10, 11, 12, 13, 14, 45], [4.0] * 6)  # rest of bin 0, then bin 3
    series = bin_series([bin_sums(first, 900), bin_sums(second, 900)], 900)
    assert series.starts_us.tolist() == [i * 900_000_000 for i in range(4)]
    assert series.target[0] == pytest.approx((10 * 1.0 + 5 * 4.0) / 15)
    # bins 1 and 2 hold nothing, bin 3 one minute of fifteen: all below 50 % coverage
    assert np.isnan(series.target[1:]).all()


def test_load_uci_bins_on_the_april_slice_marks_the_outage_missing() -> None:
    series = load_uci_bins(APRIL_2007, 900)
    assert len(series) == 30 * 96  # 1-30 April, local, on a 15-minute UTC grid
    assert np.all(np.diff(series.starts_us) == 900_000_000)
    missing = np.isnan(series.target)
    # the slice holds one 3,723-minute outage: 248 whole bins, give or take its edges
    assert 247 <= missing.sum() <= 249
    assert np.isnan(series.values[missing]).all()
    assert series.features().shape == (len(series), 11)


def test_window_starts_skip_gaps_and_need_a_measured_last_input() -> None:
    ok = np.ones(20, dtype=bool)
    targets_ok = ok.copy()
    targets_ok[12] = False  # a missing target
    inputs_ok = ok.copy()
    inputs_ok[3] = False  # a long input gap
    last_ok = ok.copy()
    last_ok[15] = False  # a short gap, interpolated in the inputs, right before origin 16
    origins = window_starts(inputs_ok, targets_ok, 4, 2, np.arange(20), last_ok=last_ok)
    for origin in origins.tolist():
        assert 4 <= origin <= 18
        assert inputs_ok[origin - 4 : origin].all()
        assert targets_ok[origin : origin + 2].all()
        assert last_ok[origin - 1]
    assert origins.tolist() == [8, 9, 10, 13, 14, 15, 17, 18]


def test_binned_series_rejects_an_irregular_grid() -> None:
    with pytest.raises(ValueError, match="regular grid"):
        BinnedSeries(np.array([0, 900_000_000, 2_000_000_000]), np.zeros((3, 7)), 900)
