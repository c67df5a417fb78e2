"""Interval-energy data for the fleet model: the London half-hourly file as a grid.

Training and the accuracy bench only (pandas): the Lambda never imports it.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from services.realtime.model.fleet_features import (
    DAY_BINS,
    FLEET_RESOLUTION_S,
    INPUT_BINS,
    england_bank_holidays,
)

__all__ = [
    "HALF_HOURLY_FILE",
    "HOLIDAYS_FILE",
    "EnergyGrid",
    "cut_windows",
    "holidays_for",
    "load_bank_holidays",
    "load_energy_grid",
]

HALF_HOURLY_FILE: Final = "lcl_halfhourly_2013_100households.csv.gz"
HOLIDAYS_FILE: Final = "lcl_uk_bank_holidays.csv.gz"
_EPOCH_DAY: Final = dt.date(1970, 1, 1)
#: The weekday a bank holiday of this kind falls on (Monday = 0), to repair the rows of
#: the London package whose day and month are swapped (2013-01-04 "Easter Monday" is
#: 2013-04-01).
_WEEKDAY_OF: Final = {
    "easter monday": 0,
    "early may": 0,
    "spring bank": 0,
    "summer bank": 0,
    "good friday": 4,
}


@dataclass(frozen=True, eq=False)
class EnergyGrid:
    """Households' average power (kW) on one 30-minute grid: ``kw[h, t]``, NaN = missing;
    bin ``t`` starts at ``start_s + t * 1800`` (UTC seconds)."""

    households: tuple[str, ...]
    start_s: int
    kw: npt.NDArray[np.float64]

    def bin_of(self, when: dt.datetime | str) -> int:
        """Index of the bin starting at ``when`` (UTC)."""
        moment = dt.datetime.fromisoformat(str(when)).replace(tzinfo=dt.UTC)
        return (int(moment.timestamp()) - self.start_s) // FLEET_RESOLUTION_S

    def subset(self, rows: npt.ArrayLike) -> EnergyGrid:
        index = np.asarray(rows, dtype=np.int64)
        return EnergyGrid(tuple(self.households[i] for i in index), self.start_s, self.kw[index])


def _data_file(path: Path, name: str) -> Path:
    return path / name if path.is_dir() else path


def load_energy_grid(path: Path, households: int | None = None) -> EnergyGrid:
    """The London half-hourly file (``LCLid,tstp,energy(kWh/hh)``) -> :class:`EnergyGrid`.

    ``path`` is the file or its folder; ``households`` keeps the first N (file order).
    """
    import pandas as pd

    frame = pd.read_csv(
        _data_file(path, HALF_HOURLY_FILE),
        names=["household", "ts", "kwh"],
        header=0,
        na_values=["Null", " Null", "null"],
        dtype={"household": str},
    )
    frame["kwh"] = pd.to_numeric(frame["kwh"], errors="coerce")
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    ids = tuple(sorted(frame["household"].unique()))
    if households is not None:
        ids = ids[:households]
        frame = frame[frame["household"].isin(ids)]
    start = frame["ts"].min().floor("D")
    start_s = int(start.timestamp())
    seconds = (frame["ts"] - start).dt.total_seconds().to_numpy()
    bins = (seconds // FLEET_RESOLUTION_S).astype(np.int64)
    total = int(bins.max()) + 1
    total += (-total) % DAY_BINS
    rows = pd.Categorical(frame["household"], categories=ids).codes
    kw = np.full((len(ids), total), np.nan)
    kw[rows, bins] = frame["kwh"].to_numpy(dtype=np.float64) * 3600.0 / FLEET_RESOLUTION_S
    return EnergyGrid(ids, start_s, kw)


def load_bank_holidays(path: Path) -> frozenset[int]:
    """The London package's bank holidays (epoch days), day/month swaps repaired, plus
    the statutory England and Wales rules for the same years."""
    found: set[int] = set()
    years: set[int] = set()
    with gzip.open(_data_file(path, HOLIDAYS_FILE), "rt", encoding="utf-8", errors="replace") as f:
        for row in csv.reader(f):
            try:
                day = dt.date.fromisoformat(row[0].strip())
            except (ValueError, IndexError):
                continue  # the header
            kind = row[1].lower() if len(row) > 1 else ""
            want = next((w for k, w in _WEEKDAY_OF.items() if k in kind), None)
            if want is not None and day.weekday() != want and day.day <= 12:
                swapped = dt.date(day.year, day.day, day.month)
                if swapped.weekday() == want:
                    day = swapped
            found.add((day - _EPOCH_DAY).days)
            years.add(day.year)
    return frozenset(found) | england_bank_holidays(years)


def holidays_for(path: Path, grid: EnergyGrid) -> frozenset[int]:
    """The bank holidays next to the data (:func:`load_bank_holidays`), else the
    statutory rules for the grid's years."""
    try:
        return load_bank_holidays(path if path.is_dir() else path.parent)
    except FileNotFoundError:
        first = dt.datetime.fromtimestamp(grid.start_s, dt.UTC).year
        return england_bank_holidays(range(first - 1, first + 3))


def cut_windows(
    grid: EnergyGrid, households: npt.ArrayLike, origins: npt.ArrayLike, horizon: int = DAY_BINS
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(history (n, 336), target (n, horizon), issue_s (n,))`` for forecasts starting at
    bin ``origins[i]`` of household ``households[i]`` (the history ends just before it)."""
    h = np.asarray(households, dtype=np.int64)
    t = np.asarray(origins, dtype=np.int64)
    history = grid.kw[h[:, None], t[:, None] + np.arange(-INPUT_BINS, 0)]
    target = grid.kw[h[:, None], t[:, None] + np.arange(horizon)]
    issue = grid.start_s + t.astype(np.float64) * FLEET_RESOLUTION_S
    return history, target, issue
