"""The fleet driver on a small synthetic LCL folder: every household, in parallel, with
progress; short or broken histories fall back and are counted by reason."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from services.monthly.adapters.datasets import lcl_blocks, read_lcl_block
from services.monthly.core.debounce import checkpoint_key, result_key
from services.monthly.core.series import DailySeries
from services.monthly.fleet import _window, run_fleet
from tests.services.monthly.fakes import daily_kwh

HEADER = (
    "LCLid,day,energy_median,energy_mean,energy_max,energy_count,energy_std,energy_sum,energy_min"
)
START = dt.date(2013, 1, 1)


def rows(household: str, values: list[float | None], *, count: int = 48) -> list[str]:
    out = []
    for i, value in enumerate(values):
        day = START + dt.timedelta(days=i)
        text = "" if value is None else repr(value)
        out.append(
            f"{household},{day},0.1,0.2,0.9,{count if value is not None else 0},0.1,{text},0.0"
        )
    return out


def write_block(folder: Path, number: int, lines: list[str]) -> None:
    with gzip.open(folder / f"block_{number}.csv.gz", "wt") as handle:
        handle.write("\n".join([HEADER, *lines]) + "\n")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "lcl"
    folder.mkdir()
    write_block(
        folder,
        0,
        rows("MAC000001", daily_kwh(200, seed=1)) + rows("MAC000002", daily_kwh(10, seed=2)),
    )
    write_block(
        folder,
        1,
        rows("MAC000003", [7.5] * 120)
        + rows("MAC000004", [None] * 40)
        + rows("MAC000005", daily_kwh(150, seed=5)[:-1])
        + [f"MAC000005,{START + dt.timedelta(days=149)},0.3,0.3,0.3,1,,0.3,0.3"],
    )
    (folder / "notes.txt").write_text("not a block")
    return folder


def test_lcl_reader_builds_daily_series_with_coverage(data_dir):
    assert [p.name for p in lcl_blocks(data_dir)] == ["block_0.csv.gz", "block_1.csv.gz"]
    series = {s.household_id: s for s in read_lcl_block(data_dir / "block_1.csv.gz")}

    assert sorted(series) == ["MAC000003", "MAC000004", "MAC000005"]
    assert series["MAC000004"].usable().sum() == 0
    assert series["MAC000005"].coverage[-1] == pytest.approx(1 / 48)


def test_run_fleet_forecasts_every_household_with_progress_and_fallback_reasons(data_dir, tmp_path):
    progress = []
    out = tmp_path / "out"

    report = run_fleet(data_dir, out, workers=2, on_progress=progress.append)

    assert report.households == 5
    assert report.failed == {}
    assert report.prophet == 2
    assert report.fallbacks_by_reason == {"constant_series": 1, "no_data": 1, "short_history": 1}
    assert [p.blocks_done for p in progress] == [1, 2]
    assert progress[-1].households_done == 5
    runs = {r.household_id: r for r in report.runs}
    # the last day has one half-hour of 48: not final, so the day before is the as-of day
    assert runs["MAC000005"].as_of == START + dt.timedelta(days=148)
    forecast = json.loads((out / result_key("MAC000001", runs["MAC000001"].as_of)).read_text())
    assert forecast["fallback_reason"] is None
    assert (out / checkpoint_key("MAC000001")).is_file()
    assert not (out / checkpoint_key("MAC000002")).exists()  # the fallback has no model
    short = json.loads((out / result_key("MAC000002", runs["MAC000002"].as_of)).read_text())
    assert short["fallback_reason"].startswith("short_history")


def test_run_fleet_as_of_day_and_household_subset_in_process(data_dir):
    report = run_fleet(
        data_dir, None, workers=1, as_of=dt.date(2013, 3, 15), households=["MAC000001", "MAC000003"]
    )

    assert sorted(r.household_id for r in report.runs) == ["MAC000001", "MAC000003"]
    assert {r.as_of for r in report.runs} == {dt.date(2013, 3, 15)}


def test_run_fleet_limit_forecasts_the_first_households_in_block_order(data_dir):
    report = run_fleet(data_dir, None, workers=1, limit=3)
    subset = run_fleet(data_dir, None, workers=1, households=["MAC000005", "MAC000002"], limit=1)
    none = run_fleet(data_dir, None, workers=1, limit=0)

    assert [r.household_id for r in report.runs] == ["MAC000001", "MAC000002", "MAC000003"]
    assert [r.household_id for r in subset.runs] == ["MAC000002"]
    assert none.households == 0
    with pytest.raises(ValueError, match="limit"):
        run_fleet(data_dir, None, workers=1, limit=-1)


def test_window_writes_each_day_as_numpy_did():
    """The fingerprint's inputs are the same strings as the numpy-scalar formula's."""
    kwh = [0.1, None, 1e-05, 0.0, 12.345678901234567, 1e16, 3.0, 2.5e-7, 7.25]
    days = [dt.date(2013, 1, 1) + dt.timedelta(days=i) for i in range(len(kwh))]
    coverage = [1.0, 0.0, 47 / 48, 0.5, 1.0, 1 / 3, 1.0, 1 / 48, 1.0]
    series = DailySeries.from_days("h1", days, [np.nan if v is None else v for v in kwh], coverage)
    day = days[-2]

    window = _window(series, day)

    expected = {
        series.start + dt.timedelta(days=int(i)): f"{series.kwh[i]!r}/{series.coverage[i]!r}"
        for i in np.flatnonzero(np.isfinite(series.until(day).kwh))
    }
    assert window == expected
    assert len(window) == 7
