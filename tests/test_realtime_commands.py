"""``wattstream train fleet``: trains on a half-hourly file and writes a loadable bundle."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from services.realtime.model.fleet_model import FleetModel, read_fleet_spec
from wattstream.cli import main


def _file(folder: Path, households: int = 3, days: int = 40) -> Path:
    rng = np.random.default_rng(2)
    start = dt.datetime(2013, 3, 1)
    lines = ["LCLid,tstp,energy(kWh/hh)"]
    for h in range(households):
        for i in range(days * 48):
            kwh = 0.05 * (h + 1) * (1 + ((i % 48) >= 36)) + rng.gamma(1.0, 0.01)
            lines.append(
                f"MAC{h:06d},{start + dt.timedelta(minutes=30 * i):%Y-%m-%d %H:%M:%S},{kwh:.3f}"
            )
    path = folder / "meters.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return path


def test_train_fleet_writes_a_bundle_that_serves(tmp_path: Path):
    data = _file(tmp_path)
    out = tmp_path / "bundles"

    result = CliRunner().invoke(
        main, ["train", "fleet", "--data", str(data), "--out", str(out), "--epochs", "1"]
    )

    assert result.exit_code == 0, result.output
    (bundle,) = out.iterdir()
    assert "written to" in result.output
    spec = read_fleet_spec(bundle)
    assert spec.version == bundle.name
    assert spec.holidays  # no holiday file next to the data: the statutory rules
    model = FleetModel.from_bundle(bundle)
    assert model.forecast(np.full((1, 336), 0.2), [1_367_366_400.0]).shape == (1, 48, 3)


def test_train_fleet_reports_too_little_data(tmp_path: Path):
    data = _file(tmp_path, days=12)

    result = CliRunner().invoke(
        main, ["train", "fleet", "--data", str(data), "--out", str(tmp_path)]
    )

    assert result.exit_code == 1
    assert "Error: not enough data" in result.output
