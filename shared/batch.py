"""Columnar readings of one household.

Why: the UCI file alone holds two million readings; as :class:`MeterReading` objects they
would take gigabytes and seconds per pass. A :class:`ReadingBatch` keeps them as one int64
array of UTC microseconds and one float64 array per measurement (``NaN`` = absent), which
is what the codec, the vectorised sanity check and the forecasters all want. Models are
built only at the edges (``from_readings`` / ``to_readings``).

Example:
    >>> import datetime as dt
    >>> r = MeterReading(household_id="h1", timestamp=dt.datetime(2007, 4, 1, tzinfo=dt.UTC),
    ...                  global_active_power_kw=3.48)
    >>> batch = ReadingBatch.from_readings([r])
    >>> len(batch), batch.columns["global_active_power_kw"][0]
    (1, np.float64(3.48))
    >>> batch.to_readings() == [r]
    True
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from shared.schema import HOUSEHOLD_ID_PATTERN, MEASUREMENT_FIELDS, MeterReading

__all__ = [
    "MAX_TIMESTAMP_US",
    "MIN_TIMESTAMP_US",
    "ReadingBatch",
    "datetime_to_us",
    "us_to_datetime",
]

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US: Final = dt.timedelta(microseconds=1)
_HOUSEHOLD_RE: Final = re.compile(HOUSEHOLD_ID_PATTERN)
_HASH_PRIME: Final = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]


def datetime_to_us(value: dt.datetime) -> int:
    """Exact microseconds since the Unix epoch of an aware datetime (no float rounding)."""
    return (value - _EPOCH) // _ONE_US


MIN_TIMESTAMP_US: Final = datetime_to_us(dt.datetime.min.replace(tzinfo=dt.UTC))
MAX_TIMESTAMP_US: Final = datetime_to_us(dt.datetime.max.replace(tzinfo=dt.UTC))
"""The range a Python datetime can hold; a row outside it cannot become a model."""


def us_to_datetime(value: int) -> dt.datetime:
    """Inverse of :func:`datetime_to_us`: an aware UTC datetime."""
    return _EPOCH + dt.timedelta(microseconds=int(value))


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view, so a frozen batch cannot be mutated through its arrays."""
    view = array.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class ReadingBatch:
    """Readings of ONE household as columns.

    ``timestamps_us`` are int64 microseconds since the Unix epoch (UTC). ``columns`` maps
    every name of :data:`MEASUREMENT_FIELDS` to a float64 array of the same length; a
    missing name given to the constructor becomes an all-``NaN`` column. Arrays are exposed
    read-only. Rows are not validated here (see ``shared.validation.sanity_mask``).
    """

    household_id: str
    timestamps_us: Int64Array
    columns: Mapping[str, Float64Array] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.household_id, str) or not _HOUSEHOLD_RE.fullmatch(self.household_id):
            raise ValueError(f"bad household id {self.household_id!r}")
        stamps = np.asarray(self.timestamps_us)
        if stamps.ndim != 1 or stamps.dtype.kind not in "iu":
            raise TypeError(
                f"timestamps_us must be a 1-d integer array, got {stamps.dtype} {stamps.shape}"
            )
        n = len(stamps)
        unknown = set(self.columns) - set(MEASUREMENT_FIELDS)
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)}")
        absent: Float64Array | None = None
        columns: dict[str, Float64Array] = {}
        for name in MEASUREMENT_FIELDS:
            if name in self.columns:
                column = np.asarray(self.columns[name], dtype=np.float64)
                if column.shape != (n,):
                    raise ValueError(f"column {name} has shape {column.shape}, expected ({n},)")
                columns[name] = _read_only(column)
            else:
                if absent is None:  # one shared NaN array for every absent column
                    absent = _read_only(np.full(n, np.nan))
                columns[name] = absent
        object.__setattr__(self, "timestamps_us", _read_only(stamps.astype(np.int64, copy=False)))
        object.__setattr__(self, "columns", columns)

    def __len__(self) -> int:
        return len(self.timestamps_us)

    def __repr__(self) -> str:
        return f"ReadingBatch(household_id={self.household_id!r}, rows={len(self)})"

    @classmethod
    def empty(cls, household_id: str) -> ReadingBatch:
        """A batch with no rows (e.g. a UCI chunk made only of gap rows)."""
        return cls(household_id, np.empty(0, dtype=np.int64))

    @classmethod
    def from_readings(
        cls, readings: Iterable[MeterReading], *, household_id: str | None = None
    ) -> ReadingBatch:
        """Columns from models; all readings must belong to the same household.

        ``household_id`` is needed only for an empty input (and checked otherwise).
        """
        readings = list(readings)
        ids = {r.household_id for r in readings}
        if household_id is not None:
            ids.add(household_id)
        if len(ids) != 1:
            raise ValueError(f"a batch holds exactly one household, got {sorted(ids) or 'none'}")
        stamps = np.fromiter(
            (datetime_to_us(r.timestamp) for r in readings), dtype=np.int64, count=len(readings)
        )
        columns = {
            name: np.array([getattr(r, name) for r in readings], dtype=np.float64)
            for name in MEASUREMENT_FIELDS
        }  # None becomes NaN
        return cls(ids.pop(), stamps, columns)

    def to_readings(self) -> list[MeterReading]:
        """Models, one per row, validated.

        Raises pydantic's ``ValidationError`` (a ``ValueError``) on a row the model refuses
        (e.g. ``inf``, or neither power nor energy); filter with
        ``shared.validation.sanity_mask`` first.
        """
        if len(self) and not (
            MIN_TIMESTAMP_US
            <= self.timestamps_us.min()
            <= self.timestamps_us.max()
            <= MAX_TIMESTAMP_US
        ):
            raise ValueError("timestamps outside the range of datetime")
        stamps = self.timestamps_us.astype("datetime64[us]").tolist()
        values = {name: column.tolist() for name, column in self.columns.items()}
        readings: list[MeterReading] = []
        for i, stamp in enumerate(stamps):
            fields = {
                name: (None if math.isnan(column[i]) else column[i])
                for name, column in values.items()
            }
            fields["household_id"] = self.household_id
            fields["timestamp"] = stamp.replace(tzinfo=dt.UTC)
            readings.append(MeterReading.model_validate(fields))
        return readings

    def row_hashes(self) -> npt.NDArray[np.uint64]:
        """A 64-bit hash of each row's values (bit patterns; every NaN, i.e. absent, alike).

        Equal values give equal hashes (the timestamp is not included); two different rows
        collide with odds of about 2**-64. Used to tell a repeat from a conflict.
        """
        hashes = np.zeros(len(self), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for i, name in enumerate(MEASUREMENT_FIELDS):
                column = self.columns[name]
                bits = np.where(np.isnan(column), np.nan, column).view(np.uint64)
                hashes = (hashes ^ bits) * _HASH_PRIME + np.uint64(i + 1)
        return hashes

    def present_columns(self) -> tuple[str, ...]:
        """Names of the columns with at least one non-``NaN`` value, in field order."""
        return tuple(name for name in MEASUREMENT_FIELDS if not np.isnan(self.columns[name]).all())

    def take(self, rows: npt.ArrayLike) -> ReadingBatch:
        """The rows selected by a boolean mask or an index array (e.g. the sane rows)."""
        index = np.asarray(rows)
        return ReadingBatch(
            self.household_id,
            self.timestamps_us[index],
            {name: column[index] for name, column in self.columns.items()},
        )

    def slice(self, start: int | None, stop: int | None) -> ReadingBatch:
        """Rows ``start:stop`` as views (no copy), e.g. to split a record."""
        return ReadingBatch(
            self.household_id,
            self.timestamps_us[start:stop],
            {name: column[start:stop] for name, column in self.columns.items()},
        )

    def sorted_by_time(self) -> ReadingBatch:
        """Rows in time order; equal timestamps keep their order (stable sort)."""
        return self.take(np.argsort(self.timestamps_us, kind="stable"))

    @classmethod
    def concat(cls, batches: Sequence[ReadingBatch]) -> ReadingBatch:
        """Rows of several batches of the same household, in the given order."""
        if not batches:
            raise ValueError("concat needs at least one batch")
        ids = {b.household_id for b in batches}
        if len(ids) != 1:
            raise ValueError(f"a batch holds exactly one household, got {sorted(ids)}")
        return cls(
            batches[0].household_id,
            np.concatenate([b.timestamps_us for b in batches]),
            {
                name: np.concatenate([b.columns[name] for b in batches])
                for name in MEASUREMENT_FIELDS
            },
        )
