"""What the RealtimeFunction zip carries of the models: small, and usable without TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import pytest

from services.realtime.model.bundle import ARTIFACTS_DIR
from services.realtime.model.fleet_model import shipped_fleet_bundle
from tests.conftest import ROOT

#: The models may take this much of the function's 250 MB (code + layer, now ~132 MB).
ARTIFACTS_BUDGET_BYTES = 10_000_000


def test_realtime_artifacts_fit_the_function_budget():
    size = sum(p.stat().st_size for p in ARTIFACTS_DIR.rglob("*") if p.is_file())

    assert 0 < size <= ARTIFACTS_BUDGET_BYTES


def test_shipped_fleet_model_serves_without_tensorflow():
    if shipped_fleet_bundle() is None:
        pytest.skip("no fleet bundle shipped yet")
    code = (
        "import sys, numpy as np\n"
        "from services.realtime.model.fleet_model import open_fleet_model\n"
        "m = open_fleet_model()\n"
        "w = np.stack([np.full((2, 336), 0.3), np.zeros((2, 336))], -1)\n"
        "w[:, :, 1] = 1_383_264_000 - 1800 * np.arange(336, 0, -1)\n"
        "out = m.predict(w)\n"
        "print(out.shape, bool(np.isfinite(out).all()), 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )

    assert result.stdout.strip().splitlines()[-1] == "(2, 48, 3) True False"
