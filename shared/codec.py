"""Aggregated record codec: many readings of one household in one Kinesis record.

Why: one JSON document per reading costs ~300 bytes, one PutRecords entry and one
pydantic validation per reading. Like the KPL, we pack many readings of ONE household
(so the household id stays the partition key and per-household order is kept) into one
record, as columns: ~7.6 bytes per UCI reading instead of ~320, and millions of readings
per second (``python -m bench codec``).

Layout of a record (little-endian)::

    offset  size  field
    0       4     magic b"\\x89WSR" (the high byte keeps it apart from JSON and text)
    4       1     codec version (1)
    5       1     schema MAJOR version of MeterReading (1)
    6       1     flags: bit 0 = payload is zlib-compressed; other bits must be 0
    7       1     household id length L (1..64)
    8       2     column bitmask: bit i set = MEASUREMENT_FIELDS[i] is stored
    10      4     row count N (>= 1)
    14      4     payload length P (bytes stored after the id)
    18      L     household id (ASCII)
    18+L    P     payload, zlib level 1 when that is smaller, else raw:
                    N x int64 timestamp deltas in microseconds (first one from 0)
                    N x float64 per stored column, in MEASUREMENT_FIELDS order
    18+L+P  4     CRC-32 of every preceding byte

Evolution (see :mod:`shared.schema`): a new measurement is a minor change, appended to
``MEASUREMENT_FIELDS`` and given the next bit; a reader that does not know a bit skips its
column (every column is ``N`` float64s, so its place is known) and reads the others. A
different schema major or codec version, or an unknown flag (it changes how the payload
is read), is refused with code ``unsupported_version``/``unsupported``.

Columns that are all NaN in a record are omitted; NaN inside a stored column means
"absent in this row". Timestamps and every non-NaN float round-trip bit for bit (``-0.0``,
subnormals and infinities included); a NaN stays NaN.

zlib level 1 was measured on the April 2007 UCI slice (zlib alone, one core): 7.4 B per
reading at 4.7 M readings/s, where level 6 gives 5.5 B at 0.8 M/s and level 9 5.2 B at
0.2 M/s; byte-shuffling the columns made it worse (16 B), so it is not used.

A record is never larger than ``max_record_bytes``: the number of rows per record is
bounded by the *uncompressed* size, and the raw payload is stored when compression does
not help, so even incompressible data fits.

Example:
    >>> import datetime as dt
    >>> r = MeterReading(household_id="MAC000002", energy_kwh=0.219, interval_s=1800,
    ...                  timestamp=dt.datetime(2013, 1, 1, tzinfo=dt.UTC))
    >>> [(key, decode_record(data).to_readings() == [r]) for key, data in encode_readings([r])]
    [('MAC000002', True)]
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Sequence
from typing import Final

import numpy as np

from shared.batch import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, ReadingBatch
from shared.schema import HOUSEHOLD_ID_PATTERN, MEASUREMENT_FIELDS, SCHEMA_VERSION, MeterReading
from shared.validation import Rejection, parse_reading

__all__ = [
    "CODEC_VERSION",
    "MAGIC",
    "MAX_RECORD_BYTES",
    "CodecError",
    "decode_record",
    "encode_batch",
    "encode_readings",
]

MAGIC: Final = b"\x89WSR"
CODEC_VERSION: Final = 1
MAX_RECORD_BYTES: Final = 1_000_000
"""Kinesis accepts 1 MiB (1,048,576 B) per record *including* the partition key (at most
256 characters); 1,000,000 leaves room for any key."""
ZLIB_LEVEL: Final = 1

FLAG_ZLIB: Final = 0x01
_KNOWN_FLAGS: Final = FLAG_ZLIB
_HEADER: Final = struct.Struct("<4sBBBBHII")
_CRC: Final = struct.Struct("<I")
_MASK_BITS: Final = 16
_HOUSEHOLD_RE: Final = re.compile(HOUSEHOLD_ID_PATTERN)
_WORD: Final = 8  # bytes per timestamp delta and per float


class CodecError(ValueError):
    """A record that cannot be decoded; ``code`` is a short machine string."""

    def __init__(self, reason: str, *, code: str = "bad_record") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _column_mask(names: Sequence[str]) -> int:
    return sum(1 << MEASUREMENT_FIELDS.index(name) for name in names)


def _encode_one(batch: ReadingBatch) -> bytes:
    """One record holding every row of ``batch`` (the caller bounds its size)."""
    present = batch.present_columns()
    stamps = batch.timestamps_us
    deltas = np.empty_like(stamps)
    deltas[:1] = stamps[:1]
    np.subtract(stamps[1:], stamps[:-1], out=deltas[1:])  # int64 wraps; cumsum undoes it
    raw = b"".join(
        [deltas.astype("<i8", copy=False).tobytes()]
        + [batch.columns[name].astype("<f8", copy=False).tobytes() for name in present]
    )
    packed = zlib.compress(raw, ZLIB_LEVEL)
    flags, payload = (FLAG_ZLIB, packed) if len(packed) < len(raw) else (0, raw)
    household = batch.household_id.encode("ascii")
    body = b"".join(
        [
            _HEADER.pack(
                MAGIC,
                CODEC_VERSION,
                SCHEMA_VERSION,
                flags,
                len(household),
                _column_mask(present),
                len(batch),
                len(payload),
            ),
            household,
            payload,
        ]
    )
    return body + _CRC.pack(zlib.crc32(body))


def max_rows_per_record(
    household_id: str, n_columns: int, max_record_bytes: int = MAX_RECORD_BYTES
) -> int:
    """Rows that fit in one record even if nothing compresses (0 if not even one)."""
    overhead = _HEADER.size + len(household_id) + _CRC.size
    return max(0, (max_record_bytes - overhead) // (_WORD * (1 + n_columns)))


def encode_batch(batch: ReadingBatch, *, max_record_bytes: int = MAX_RECORD_BYTES) -> list[bytes]:
    """Records, in row order, each at most ``max_record_bytes`` long (empty batch: none).

    Rows keep their order (unsorted timestamps are fine). Raises ``ValueError`` when not
    even one row fits in ``max_record_bytes``.
    """
    rows = max_rows_per_record(batch.household_id, len(batch.present_columns()), max_record_bytes)
    if rows < 1:
        raise ValueError(f"max_record_bytes={max_record_bytes} cannot hold a single reading")
    return [_encode_one(batch.slice(start, start + rows)) for start in range(0, len(batch), rows)]


def encode_readings(
    readings: Sequence[MeterReading], *, max_record_bytes: int = MAX_RECORD_BYTES
) -> list[tuple[str, bytes]]:
    """``(partition_key, data)`` pairs: readings grouped by household (first-seen order),
    the household id as partition key so each household stays on one shard, in order."""
    groups: dict[str, list[MeterReading]] = {}
    for reading in readings:
        groups.setdefault(reading.household_id, []).append(reading)
    return [
        (household, record)
        for household, group in groups.items()
        for record in encode_batch(
            ReadingBatch.from_readings(group), max_record_bytes=max_record_bytes
        )
    ]


def _decode_json(data: bytes) -> ReadingBatch:
    """A non-aggregated record: one JSON ``MeterReading``, as KPL de-aggregation passes on."""
    reading = parse_reading(data)
    if isinstance(reading, Rejection):
        raise CodecError(f"not an aggregated record and {reading.reason}", code=reading.code)
    return ReadingBatch.from_readings([reading])


def _inflate(payload: bytes, expected: int) -> bytes:
    """Decompress exactly ``expected`` bytes; never more (a zip bomb stops there)."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(payload, expected + 1)
    except zlib.error as exc:
        raise CodecError(f"corrupt compressed payload: {exc}", code="corrupt") from exc
    if len(raw) != expected or not inflater.eof or inflater.unused_data:
        raise CodecError(
            f"payload inflates to {len(raw)}{'+' if len(raw) > expected else ''} bytes, "
            f"expected {expected} for the row count and columns",
            code="inconsistent_lengths",
        )
    return raw


def decode_record(data: bytes | bytearray | memoryview) -> ReadingBatch:
    """The readings of one record: our binary format, or a single JSON ``MeterReading``.

    Checks structure only (run ``shared.validation.sanity_mask`` on the result). Raises
    :class:`CodecError`, and nothing else, for any input that is not a valid record.
    """
    data = bytes(data)
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data) and data:
            raise CodecError(f"truncated record: {len(data)} bytes", code="truncated")
        if data.lstrip()[:1] == b"{":
            return _decode_json(data)
        raise CodecError(
            f"bad magic {data[:4]!r}: neither an aggregated record (magic {MAGIC!r}) nor a "
            "JSON reading",
            code="bad_magic",
        )
    if len(data) < _HEADER.size + _CRC.size:
        raise CodecError(f"truncated record: {len(data)} bytes", code="truncated")
    _, version, schema, flags, id_len, mask, count, payload_len = _HEADER.unpack_from(data)
    if version != CODEC_VERSION:
        raise CodecError(
            f"unsupported codec version {version} (this reader knows {CODEC_VERSION})",
            code="unsupported_version",
        )
    if schema != SCHEMA_VERSION:
        raise CodecError(
            f"unsupported schema version {schema} (this reader knows {SCHEMA_VERSION}.x; "
            "a new major is read from its own stream, or after its consumers are deployed)",
            code="unsupported_version",
        )
    expected_len = _HEADER.size + id_len + payload_len + _CRC.size
    if len(data) < expected_len:
        raise CodecError(
            f"truncated record: {len(data)} bytes, header announces {expected_len}",
            code="truncated",
        )
    if len(data) > expected_len:
        raise CodecError(
            f"inconsistent lengths: {len(data)} bytes, header announces {expected_len}",
            code="inconsistent_lengths",
        )
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[: -_CRC.size]) != crc:
        raise CodecError("checksum mismatch: the record is corrupted", code="checksum_mismatch")
    # The checksum matched, so the rest was written by an encoder: a failure below means an
    # encoder bug or a foreign writer, still reported as CodecError.
    if flags & ~_KNOWN_FLAGS:
        raise CodecError(f"unsupported flags {flags:#04x}", code="unsupported")
    household = data[_HEADER.size : _HEADER.size + id_len].decode("ascii", errors="replace")
    if not _HOUSEHOLD_RE.fullmatch(household):
        raise CodecError(f"bad household id {household!r}", code="bad_household_id")
    if count == 0:
        raise CodecError(
            "inconsistent lengths: a record holds at least one reading", code="inconsistent_lengths"
        )
    # every stored column by its place; columns of a newer minor (unknown bits) are skipped
    stored = [i for i in range(_MASK_BITS) if mask >> i & 1]
    expected_raw = _WORD * count * (1 + len(stored))
    payload = data[_HEADER.size + id_len : -_CRC.size]
    if flags & FLAG_ZLIB:
        raw = _inflate(payload, expected_raw)
    elif len(payload) != expected_raw:
        raise CodecError(
            f"inconsistent lengths: payload of {len(payload)} bytes, expected {expected_raw}",
            code="inconsistent_lengths",
        )
    else:
        raw = payload
    stamps = np.cumsum(np.frombuffer(raw, dtype="<i8", count=count), dtype=np.int64)
    if not MIN_TIMESTAMP_US <= stamps.min() <= stamps.max() <= MAX_TIMESTAMP_US:
        raise CodecError("timestamps outside the years 1-9999", code="bad_timestamp")
    columns = {
        MEASUREMENT_FIELDS[bit]: np.frombuffer(
            raw, dtype="<f8", count=count, offset=_WORD * count * (1 + place)
        )
        for place, bit in enumerate(stored)
        if bit < len(MEASUREMENT_FIELDS)
    }
    return ReadingBatch(household, stamps, columns)
