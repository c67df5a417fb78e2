"""Loading interval-energy data and bank holidays for the fleet model."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import numpy as np

from services.realtime.model.fleet_data import load_bank_holidays, load_energy_grid


def _day(value: str) -> int:
    return (dt.date.fromisoformat(value) - dt.date(1970, 1, 1)).days


def test_load_bank_holidays_repairs_swapped_day_and_month(tmp_path: Path):
    path = tmp_path / "lcl_uk_bank_holidays.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("Bank holidays,Type\n2013-01-04,Easter Monday\n2013-12-25,Christmas Day\n")

    days = load_bank_holidays(tmp_path)

    assert _day("2013-04-01") in days
    assert _day("2013-01-04") not in days
    assert _day("2013-12-25") in days
    assert _day("2013-08-26") in days  # the statutory rules fill the rest of the year


def test_load_energy_grid_pivots_households_and_marks_missing(tmp_path: Path):
    path = tmp_path / "lcl_halfhourly_2013_100households.csv.gz"
    rows = ["LCLid,tstp,energy(kWh/hh)"]
    for i in range(96):
        stamp = dt.datetime(2013, 1, 1) + dt.timedelta(minutes=30 * i)
        rows.append(f"MAC1,{stamp:%Y-%m-%d %H:%M:%S}, {0.1 * (i % 4):.3f} ")
        if i != 5:
            rows.append(f"MAC2,{stamp:%Y-%m-%d %H:%M:%S},Null")
    with gzip.open(path, "wt") as f:
        f.write("\n".join(rows) + "\n")

    grid = load_energy_grid(tmp_path)

    assert grid.households == ("MAC1", "MAC2")
    assert grid.kw.shape == (2, 96)
    np.testing.assert_allclose(grid.kw[0, :4], [0.0, 0.2, 0.4, 0.6])  # kWh per 30 min -> kW
    assert np.isnan(grid.kw[1]).all()
    assert grid.bin_of("2013-01-01 12:00") == 24
