"""Readers of the real data sets the fleet command and the backtests run on.

* London LCL ``daily_dataset`` blocks (``block_<n>.csv.gz``: ``LCLid, day, ...,
  energy_sum, energy_count``): each row is a household-day; ``energy_sum`` is its kWh,
  ``energy_count`` its number of half-hours, so ``coverage = energy_count / 48``. Days
  with no row are gaps. Rows with an empty ``energy_sum`` are gaps too.
* The UCI minute file, as **Brownlee's daily sums**: see :func:`uci_daily_kw_minutes`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from services.monthly.core.backtest import brownlee_daily_sums
from services.monthly.core.series import DailySeries
from shared.uci import iter_uci

__all__ = [
    "HALF_HOURS_PER_DAY",
    "lcl_block_ids",
    "lcl_blocks",
    "read_lcl_block",
    "read_lcl_daily",
    "uci_daily_kw_minutes",
]

HALF_HOURS_PER_DAY: Final = 48
_BLOCK: Final = re.compile(r"block_(\d+)\.csv(\.gz)?$")
_LCL_COLUMNS: Final = ["LCLid", "day", "energy_sum", "energy_count"]


def lcl_blocks(data_dir: str | Path) -> list[Path]:
    """The block files of an LCL ``daily_dataset`` folder, in block-number order."""
    found = [p for p in Path(data_dir).iterdir() if _BLOCK.search(p.name)]
    if not found:
        raise FileNotFoundError(f"no block_<n>.csv[.gz] files in {data_dir}")
    return sorted(found, key=lambda p: int(_BLOCK.search(p.name)[1]))  # type: ignore[index]


def lcl_block_ids(path: str | Path) -> list[str]:
    """The household ids of one block file, in the order :func:`read_lcl_block` yields them."""
    ids = pd.read_csv(path, usecols=["LCLid"], dtype={"LCLid": str})["LCLid"]
    return sorted(ids.dropna().unique().tolist())


def read_lcl_block(path: str | Path) -> list[DailySeries]:
    """Every household of one block file, as daily series (kWh, coverage)."""
    frame = pd.read_csv(
        path,
        usecols=_LCL_COLUMNS,
        dtype={"LCLid": str, "day": str, "energy_sum": np.float64, "energy_count": np.float64},
    )
    if frame.empty:
        return []
    frame = frame.sort_values(["LCLid", "day"], kind="stable")
    ids = frame["LCLid"].to_numpy()
    days = frame["day"].to_numpy().astype("datetime64[D]")
    kwh = frame["energy_sum"].to_numpy(dtype=np.float64)
    coverage = np.clip(frame["energy_count"].to_numpy(dtype=np.float64) / HALF_HOURS_PER_DAY, 0, 1)
    coverage = np.where(np.isfinite(kwh), np.nan_to_num(coverage), 0.0)
    cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(ids)]])
    return [
        DailySeries.from_arrays(str(ids[a]), days[a:b], kwh[a:b], coverage[a:b])
        for a, b in zip(starts, ends, strict=True)
    ]


def read_lcl_daily(paths: Iterable[str | Path]) -> Iterator[DailySeries]:
    """Every household of the given block files, block by block."""
    for path in paths:
        yield from read_lcl_block(path)


def uci_daily_kw_minutes(
    source: str | Path, *, household_id: str = "uci-sceaux"
) -> tuple[npt.NDArray[np.datetime64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The UCI file as Brownlee's daily sums: (days, kW*min per file-clock day, coverage).

    Read with ``utc_offset=0`` so the "UTC" day is the file's own clock day (Brownlee's
    days); the aggregation itself is :func:`~services.monthly.core.backtest.brownlee_daily_sums`.
    """
    stamps: list[npt.NDArray[np.int64]] = []
    values: list[npt.NDArray[np.float64]] = []
    missing: list[npt.NDArray[np.int64]] = []
    for chunk in iter_uci(source, household_id=household_id, utc_offset=dt.timedelta(0)):
        stamps.append(chunk.readings.timestamps_us)
        values.append(chunk.readings.columns["global_active_power_kw"])
        missing.append(chunk.missing_timestamps_us)
    return brownlee_daily_sums(
        np.concatenate(stamps), np.concatenate(values), np.concatenate(missing)
    )
