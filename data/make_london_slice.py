"""Rebuild ``data/london/``: a small real slice of the London smart-meter data.

``python data/make_london_slice.py --source ../shared/data`` writes the same layout as
the full data set (information file, ``lcl_daily_dataset/block_*.csv.gz``, half-hourly
file), so ``wattstream simulate`` reads either one with the same code. Deterministic:
the first households (by id) with a complete 2013, the first few half-hourly ones.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import pandas as pd

DAILY_HOUSEHOLDS = 60
HALFHOURLY_HOUSEHOLDS = 6
FIRST_DAY, LAST_DAY = "2013-01-01", "2013-12-31"
HALFHOURLY_UNTIL = "2013-02-26"  # 8 weeks: every weekday's shape, 8 times


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as out:  # mtime 0: byte-identical rebuilds
        out.write(frame.to_csv(index=False).encode())


def build(source: Path, out: Path) -> None:
    info = pd.read_csv(source / "lcl_informations_households.csv.gz", dtype=str)
    chosen: list[pd.DataFrame] = []
    for block in sorted(info["file"].unique(), key=lambda b: int(b.split("_")[1])):
        daily = pd.read_csv(source / "lcl_daily_dataset" / f"{block}.csv.gz", dtype={"LCLid": str})
        daily = daily[(daily["day"] >= FIRST_DAY) & (daily["day"] <= LAST_DAY)]
        complete = daily[daily["energy_count"] == 48].groupby("LCLid").size()
        ids = sorted(complete[complete >= 360].index)
        rows = daily[daily["LCLid"].isin(ids)]
        chosen.append(rows[["LCLid", "day", "energy_count", "energy_sum"]].round(3))
        if sum(frame["LCLid"].nunique() for frame in chosen) >= DAILY_HOUSEHOLDS:
            break
    daily = pd.concat(chosen)
    keep = sorted(daily["LCLid"].unique())[:DAILY_HOUSEHOLDS]
    daily = daily[daily["LCLid"].isin(keep)]
    slice_info = info[info["LCLid"].isin(keep)].sort_values("LCLid")
    _write_csv(slice_info, out / "lcl_informations_households.csv.gz")
    for block, ids in slice_info.groupby("file")["LCLid"]:
        rows = daily[daily["LCLid"].isin(set(ids))].sort_values(["LCLid", "day"])
        _write_csv(rows, out / "lcl_daily_dataset" / f"{block}.csv.gz")
    half = pd.read_csv(
        source / "lcl_halfhourly_2013_100households.csv.gz", dtype=str, skipinitialspace=True
    )
    half_ids = sorted(half["LCLid"].unique())[:HALFHOURLY_HOUSEHOLDS]
    half = half[half["LCLid"].isin(half_ids) & (half["tstp"] < HALFHOURLY_UNTIL)]
    _write_csv(half, out / "lcl_halfhourly_2013_100households.csv.gz")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "london")
    arguments = parser.parse_args()
    build(arguments.source, arguments.out)
