"""The gap rule shared by training and the streaming window (numpy only, no pandas)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from services.realtime.core.features import interpolate_gaps
from tests.conftest import ROOT


def test_interpolate_gaps_fills_short_interior_runs_only() -> None:
    nan = np.nan
    column = np.array([nan, 1.0, nan, 3.0, nan, nan, nan, 7.0, nan])
    filled = interpolate_gaps(column, 2)
    # the single-bin gap is filled, the three-bin gap and both ends stay missing
    np.testing.assert_array_equal(filled, [nan, 1.0, 2.0, 3.0, nan, nan, nan, 7.0, nan])
    np.testing.assert_array_equal(interpolate_gaps(column, 3)[4:7], [4.0, 5.0, 6.0])


def test_interpolate_gaps_works_per_column() -> None:
    values = np.array([[1.0, 10.0], [np.nan, 20.0], [3.0, np.nan], [4.0, 40.0]])
    np.testing.assert_array_equal(
        interpolate_gaps(values, 1), [[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]]
    )


def test_window_core_does_not_import_pandas():
    """The streaming core (and the realtime Lambda) must not pull pandas in."""
    code = "import sys, services.realtime.core.window; print('pandas' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
