"""Streaming parser of the UCI *Individual household electric power consumption* file.

Why streaming: the file holds 2,075,259 minutes (133 MB of text); it is read in chunks of
``chunk_rows`` lines, parsed by pandas' C engine with explicit dtypes, and each chunk comes
out as a columnar :class:`ReadingBatch`, so memory stays bounded by the chunk size.

Format (``;``-separated, header line, CRLF, plain or gzip detected by magic bytes)::

    Date;Time;Global_active_power;Global_reactive_power;Voltage;Global_intensity;...
    1/4/2007;00:00:00;3.480;0.238;239.530;14.400;2.000;1.000;18.000
    28/4/2007;00:21:00;?;?;?;?;?;?;

Gap rows (``?``, and an empty last field) are *reported* as missing timestamps, never
filled in. Malformed lines (wrong field count, unparsable number or date) do not stop the
parse: they are returned with their line number and the reason (errors are data).

Timestamp convention (see :func:`uci_timestamp_convention`): the file's times are the
local clock of Sceaux *without daylight-saving jumps*. The minute grid has no duplicate
and no skipped minute, even across the March and October changes, so it is not
Europe/Paris wall time (that would skip an hour in March and repeat one in October). We
read it as a fixed offset, by default UTC+01:00 (CET, standard time), and convert to
UTC. This keeps the series strictly increasing and one-to-one; measured on the full file:
2,075,259 rows = 2,049,280 complete + 25,979 missing, no duplicate, strictly increasing.

Example:
    >>> import io
    >>> text = (b"Date;Time;Global_active_power;Global_reactive_power;Voltage;"
    ...         b"Global_intensity;Sub_metering_1;Sub_metering_2;Sub_metering_3\\r\\n"
    ...         b"1/4/2007;00:00:00;3.480;0.238;239.530;14.400;2.000;1.000;18.000\\r\\n"
    ...         b"1/4/2007;00:01:00;?;?;?;?;?;?;\\r\\n")
    >>> [chunk] = iter_uci(io.BytesIO(text))
    >>> chunk.readings.to_readings()[0].timestamp.isoformat()
    '2007-03-31T23:00:00+00:00'
    >>> chunk.rows, len(chunk.readings), chunk.missing_timestamps_us.tolist()
    (2, 1, [1175382060000000])
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import gzip
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from shared.batch import ReadingBatch, us_to_datetime
from shared.clock import (
    UCI_CLOCK,
    UCI_UTC_OFFSET,
    UTC_OFFSET_METADATA,
    format_utc_offset,
    parse_utc_offset,
    uci_timestamp_convention,
)

__all__ = [
    "UCI_CLOCK",
    "UCI_COLUMNS",
    "UCI_HEADER",
    "UCI_HOUSEHOLD_ID",
    "UCI_UTC_OFFSET",
    "UTC_OFFSET_METADATA",
    "Malformed",
    "UciChunk",
    "UciFormatError",
    "format_utc_offset",
    "iter_uci",
    "parse_utc_offset",
    "uci_timestamp_convention",
]

UCI_HOUSEHOLD_ID: Final = "uci-sceaux"
UCI_COLUMNS: Final = {
    "Global_active_power": "global_active_power_kw",
    "Global_reactive_power": "global_reactive_power_kw",
    "Voltage": "voltage_v",
    "Global_intensity": "global_intensity_a",
    "Sub_metering_1": "sub_metering_1_wh",
    "Sub_metering_2": "sub_metering_2_wh",
    "Sub_metering_3": "sub_metering_3_wh",
}
"""UCI column -> MeterReading field (units already match: kW, V, A, Wh)."""

UCI_HEADER: Final = "Date;Time;" + ";".join(UCI_COLUMNS)
_FIELDS_PER_LINE: Final = 2 + len(UCI_COLUMNS)
_MISSING_TOKENS: Final = ("?", "")
_GZIP_MAGIC: Final = b"\x1f\x8b"
_US_PER_DAY: Final = 86_400_000_000

Malformed = tuple[int, str, str]
"""``(line number, raw line without its line ending, reason)``; line 1 is the header."""


class UciFormatError(ValueError):
    """The input is not a UCI file at all (wrong header); bad lines are data, not this."""


@dataclass(frozen=True, eq=False)
class UciChunk:
    """One chunk of the file.

    ``readings`` holds the complete rows; ``missing_timestamps_us`` the UTC microseconds of
    rows with any ``?`` or empty value; ``malformed`` the lines that could not be parsed.
    ``rows`` counts every non-blank data line of the chunk (so ``rows == len(readings) +
    len(missing_timestamps_us) + len(malformed)``). ``first_line_no`` is the file line of
    the chunk's first line. First/last timestamps cover complete and missing rows.
    """

    readings: ReadingBatch
    missing_timestamps_us: npt.NDArray[np.int64]
    rows: int
    first_line_no: int
    first_timestamp_us: int | None
    last_timestamp_us: int | None
    malformed: list[Malformed] = field(default_factory=list)

    @property
    def first_timestamp(self) -> dt.datetime | None:
        """Earliest timestamp in the chunk (aware UTC), if any row had one."""
        return None if self.first_timestamp_us is None else us_to_datetime(self.first_timestamp_us)

    @property
    def last_timestamp(self) -> dt.datetime | None:
        """Latest timestamp in the chunk (aware UTC), if any row had one."""
        return None if self.last_timestamp_us is None else us_to_datetime(self.last_timestamp_us)


@contextlib.contextmanager
def _open_binary(source: str | Path | IO[bytes]) -> Iterator[IO[bytes]]:
    """A buffered binary stream of the text, gunzipped when the data starts with gzip magic."""
    with contextlib.ExitStack() as stack:
        if isinstance(source, str | Path):
            stream: IO[bytes] = stack.enter_context(open(source, "rb"))
        else:
            stream = source
        if not hasattr(stream, "peek"):
            wrapper = io.BufferedReader(cast("io.RawIOBase", stream))
            stack.callback(wrapper.detach)  # leave the caller's stream open
            stream = wrapper
        if cast("io.BufferedReader", stream).peek(2)[:2] == _GZIP_MAGIC:
            gunzipped = stack.enter_context(gzip.GzipFile(fileobj=stream, mode="rb"))
            # BufferedReader iterates lines in C, about twice as fast as GzipFile's readline.
            stream = stack.enter_context(io.BufferedReader(gunzipped, 1 << 20))
        yield stream


def _decode(line: bytes) -> str:
    return line.rstrip(b"\r\n").decode("utf-8", errors="replace")


def _parse_dates(dates: pd.Series, times: pd.Series) -> npt.NDArray[np.int64]:
    """Local microseconds since the epoch, -1 where the date or the time is invalid.

    Vectorised over the distinct values: a chunk has ~140 distinct dates and at most
    1,440 distinct times, so each is parsed once and the results are broadcast back.
    """
    date_codes, date_values = pd.factorize(dates)
    time_codes, time_values = pd.factorize(times)
    day = pd.to_datetime(pd.Series(date_values), format="%d/%m/%Y", errors="coerce")
    clock = pd.to_datetime(pd.Series(time_values), format="%H:%M:%S", errors="coerce")
    nat = np.iinfo(np.int64).min
    # One extra NaT slot at the end, picked by factorize's -1 code for a missing value.
    day_us = np.append(day.to_numpy("datetime64[us]").view(np.int64), nat)[date_codes]
    clock_us = np.append(
        (clock - pd.Timestamp("1900-01-01")).to_numpy("timedelta64[us]").view(np.int64), nat
    )[time_codes]
    invalid = (day_us == nat) | (clock_us < 0) | (clock_us >= _US_PER_DAY)
    return np.where(invalid, -1, day_us + clock_us)


def _read_frame(text: bytes, *, as_float: bool) -> pd.DataFrame:
    """The C-engine parse of lines already known to have 9 fields and no stray CR."""
    return pd.read_csv(
        io.BytesIO(text),
        sep=";",
        header=None,
        names=["Date", "Time", *UCI_COLUMNS],
        dtype={"Date": str, "Time": str, **dict.fromkeys(UCI_COLUMNS, float if as_float else str)},
        na_values={name: list(_MISSING_TOKENS) for name in UCI_COLUMNS},
        keep_default_na=False,
        na_filter=as_float,
        quoting=csv.QUOTE_NONE,
        encoding_errors="replace",
        engine="c",
    )


def _parse_values(text: bytes) -> tuple[pd.DataFrame, npt.NDArray[np.float64], list[str | None]]:
    """Frame, value matrix (NaN = ``?``/empty) and per row the reason it is unparsable.

    The fast path parses floats in C. Only a chunk holding a bad number is parsed again as
    text, to find out which rows are bad.
    """
    names = list(UCI_COLUMNS)
    try:
        frame = _read_frame(text, as_float=True)
        values = frame[names].to_numpy(np.float64)
        reasons: list[str | None] = [None] * len(frame)
    except ValueError:
        frame = _read_frame(text, as_float=False)
        raw = frame[names].apply(lambda column: column.str.strip())
        values = raw.apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        unparsable = np.isnan(values) & ~raw.isin(_MISSING_TOKENS).to_numpy()
        reasons = [None] * len(frame)
        for row, col in zip(*np.nonzero(unparsable), strict=True):
            reasons[row] = reasons[row] or (
                f"{names[col]}: cannot parse {raw.iat[row, col]!r} as a number"
            )
    for row, col in zip(*np.nonzero(np.isinf(values)), strict=True):
        reasons[row] = reasons[row] or f"{names[col]}: {values[row, col]} is not finite"
    return frame, values, reasons


def _parse_chunk(
    lines: list[bytes], first_line_no: int, household_id: str, offset_us: int
) -> UciChunk:
    malformed: list[Malformed] = []
    kept: list[int] = []  # indices of the lines handed to pandas
    for i, line in enumerate(lines):
        body = line.rstrip(b"\r\n")
        if not body.strip():
            continue  # a blank line holds no reading: nothing to report
        fields = body.count(b";") + 1
        if fields != _FIELDS_PER_LINE:
            reason = f"expected {_FIELDS_PER_LINE} ';'-separated fields, found {fields}"
        elif b"\r" in body:  # pandas would end the row there and misalign the rest
            reason = "carriage return inside the line"
        else:
            kept.append(i)
            continue
        malformed.append((first_line_no + i, _decode(line), reason))
    rows = len(kept) + len(malformed)

    if kept:
        text = b"".join(lines[i].rstrip(b"\r\n") + b"\n" for i in kept)
        frame, values, reasons = _parse_values(text)
        if len(frame) != len(kept):  # excluded by the checks above; never misalign silently
            raise AssertionError(f"parsed {len(frame)} rows from {len(kept)} lines")
        local_us = _parse_dates(frame["Date"], frame["Time"])
    else:
        values, reasons = np.empty((0, len(UCI_COLUMNS))), []
        local_us = np.empty(0, dtype=np.int64)
    for row in np.flatnonzero(local_us == -1):
        reasons[row] = reasons[row] or "cannot parse date/time as d/m/yyyy;hh:mm:ss"
    bad = np.array([reason is not None for reason in reasons], dtype=bool)
    malformed.extend(
        (first_line_no + kept[row], _decode(lines[kept[row]]), reasons[row] or "")
        for row in np.flatnonzero(bad)
    )
    malformed.sort()

    stamps = local_us - offset_us
    missing = ~bad & np.isnan(values).any(axis=1)
    complete = ~bad & ~missing
    dated = stamps[~bad]
    return UciChunk(
        readings=ReadingBatch(
            household_id,
            stamps[complete],
            {name: values[complete, j] for j, name in enumerate(UCI_COLUMNS.values())},
        ),
        missing_timestamps_us=stamps[missing],
        rows=rows,
        first_line_no=first_line_no,
        first_timestamp_us=int(dated.min()) if len(dated) else None,
        last_timestamp_us=int(dated.max()) if len(dated) else None,
        malformed=malformed,
    )


def iter_uci(
    source: str | Path | IO[bytes],
    *,
    household_id: str = UCI_HOUSEHOLD_ID,
    chunk_rows: int = 200_000,
    utc_offset: dt.timedelta = UCI_UTC_OFFSET,
) -> Iterator[UciChunk]:
    """Chunks of at most ``chunk_rows`` data lines, in file order.

    ``source`` is a path or a binary stream, plain text or gzip (detected from the data).
    Times are converted to UTC with the fixed ``utc_offset`` (see the module docstring).
    Raises :class:`UciFormatError` when the first line is not the UCI header.
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be positive")
    offset_us = utc_offset // dt.timedelta(microseconds=1)
    with _open_binary(source) as stream:
        header = _decode(stream.readline())
        if header.strip().lstrip("\ufeff") != UCI_HEADER:
            raise UciFormatError(f"not a UCI household power file: header {header[:120]!r}")
        line_no = 2
        while lines := list(itertools.islice(stream, chunk_rows)):
            yield _parse_chunk(lines, line_no, household_id, offset_us)
            line_no += len(lines)
