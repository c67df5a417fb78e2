"""``python -m bench latency``: runs end to end on a few samples and keeps its contract.

It runs as its own process, as a user runs it: the benchmark starts servers and threads
that configure process-wide logging, which must not leak into the rest of the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench.__main__ import available
from tests.conftest import ROOT


def test_bench_latency_prints_one_json_object_last() -> None:
    assert "latency" in available()
    args = ["latency", "--samples", "3", "--realtime", "stub", "--warmup-minutes", "60"]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) > 1  # human lines first
    result = json.loads(lines[-1])
    assert result["benchmark"] == "latency"
    assert result["n"] == 3
    assert result["realtime"] == "stub"
    assert result["runner_errors"] == 0
    # a forecast can only be served after its reading is on the stream
    assert 0 < result["baseline_stream_p50_s"] <= result["p50_s"] <= result["p99_s"]
