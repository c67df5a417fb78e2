"""The aggregated record codec."""

from __future__ import annotations

import contextlib
import datetime as dt
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.batch import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, ReadingBatch
from shared.codec import (
    MAGIC,
    MAX_RECORD_BYTES,
    CodecError,
    decode_record,
    encode_batch,
    encode_readings,
    max_rows_per_record,
)
from shared.schema import MEASUREMENT_FIELDS, MeterReading
from tests.shared.strategies import any_floats, assert_same_batch, batches, readings

HEADER = struct.Struct("<4sBBBBHII")


def decode_all(records: list[bytes]) -> ReadingBatch:
    return ReadingBatch.concat([decode_record(record) for record in records])


def one_record(batch: ReadingBatch) -> bytes:
    [record] = encode_batch(batch)
    return record


def small_batch() -> ReadingBatch:
    return ReadingBatch(
        "MAC000002",
        np.array([1_000_000, 2_000_000, 1_500_000], dtype=np.int64),
        {"energy_kwh": np.array([0.1, 0.2, np.nan]), "interval_s": np.full(3, 1800.0)},
    )


def reseal(record: bytes, **fields: int) -> bytes:
    """The record with header fields changed and a valid checksum again."""
    names = ("magic", "version", "schema", "flags", "id_len", "mask", "count", "payload_len")
    values = dict(zip(names, HEADER.unpack_from(record), strict=True)) | fields
    body = HEADER.pack(*values.values()) + record[HEADER.size : -4]
    return body + struct.pack("<I", zlib.crc32(body))


@given(batches())
def test_codec_round_trips_batches_bit_for_bit(batch: ReadingBatch) -> None:
    records = encode_batch(batch)
    assert all(len(record) <= MAX_RECORD_BYTES for record in records)
    assert_same_batch(decode_all(records), batch)


@given(st.lists(readings(), min_size=1, max_size=30))
def test_codec_round_trips_models_grouped_by_household(models: list[MeterReading]) -> None:
    pairs = encode_readings(models)
    decoded: dict[str, list[MeterReading]] = {}
    for key, data in pairs:
        batch = decode_record(data)
        assert batch.household_id == key
        decoded.setdefault(key, []).extend(batch.to_readings())
    expected: dict[str, list[MeterReading]] = {}
    for model in models:
        expected.setdefault(model.household_id, []).append(model)
    assert decoded == expected
    assert [key for key, _ in pairs] == list(expected)  # first-seen order, one key each


def test_codec_keeps_negative_zero_and_extreme_magnitudes() -> None:
    values = np.array([-0.0, 5e-324, -1.7976931348623157e308, 1e-300, np.inf, np.nan])
    stamps = np.array([MAX_TIMESTAMP_US, -5, 7, 7, 0, -(10**15)], dtype=np.int64)
    batch = ReadingBatch("h1", stamps, {"voltage_v": values})
    decoded = decode_record(one_record(batch))
    assert np.signbit(decoded.columns["voltage_v"][0])
    assert_same_batch(decoded, batch)


def test_codec_omits_all_nan_columns() -> None:
    batch = small_batch()
    record = one_record(batch)
    mask = HEADER.unpack_from(record)[5]
    present = {name for i, name in enumerate(MEASUREMENT_FIELDS) if mask >> i & 1}
    assert present == {"energy_kwh", "interval_s"}
    assert_same_batch(decode_record(record), batch)


@settings(max_examples=30)
@given(batches(max_rows=60, floats=any_floats), st.integers(150, 3_000))
def test_encode_batch_respects_any_record_limit(batch: ReadingBatch, limit: int) -> None:
    records = encode_batch(batch, max_record_bytes=limit)
    assert all(len(record) <= limit for record in records)
    assert_same_batch(decode_all(records), batch)


def test_encode_batch_respects_the_kinesis_limit_with_incompressible_data() -> None:
    rng = np.random.default_rng(7)
    n = 100_000
    # random bit patterns: zlib can hardly shrink them
    columns = {name: np.frombuffer(rng.bytes(8 * n), np.float64) for name in MEASUREMENT_FIELDS}
    stamps = np.frombuffer(rng.bytes(8 * n), np.int64) % MAX_TIMESTAMP_US
    batch = ReadingBatch("MAC000002", stamps, columns)
    records = encode_batch(batch)
    per_record = max_rows_per_record("MAC000002", len(MEASUREMENT_FIELDS))
    assert len(records) == -(-n // per_record) == 9
    assert all(len(record) <= MAX_RECORD_BYTES for record in records)
    # zlib saves under 0.2 % here: the rows per record were bounded by the raw size
    assert min(len(record) for record in records[:-1]) > 0.998 * MAX_RECORD_BYTES
    assert records[-1][6] == 0  # flags: 8 random rows do not compress, stored raw
    assert_same_batch(decode_all(records), batch)


def test_encode_batch_compresses_real_data(april_batch: ReadingBatch) -> None:
    records = encode_batch(april_batch)
    assert sum(map(len, records)) / len(april_batch) < 10  # 80 bytes per reading raw
    assert_same_batch(decode_all(records), april_batch)


def test_encode_batch_refuses_a_limit_that_cannot_hold_one_reading() -> None:
    with pytest.raises(ValueError, match="single reading"):
        encode_batch(small_batch(), max_record_bytes=40)
    assert encode_batch(ReadingBatch.empty("h1")) == []


def test_decode_record_accepts_a_plain_json_reading() -> None:
    reading = MeterReading(
        household_id="MAC000002",
        timestamp=dt.datetime(2013, 1, 1, tzinfo=dt.UTC),
        energy_kwh=0.219,
        interval_s=1800.0,
    )
    for data in (reading.model_dump_json().encode(), b"  \n" + reading.model_dump_json().encode()):
        assert decode_record(data).to_readings() == [reading]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "bad_magic"),
        (b"\x89W", "truncated"),
        (b"PK\x03\x04 not ours", "bad_magic"),
        (b'{"household_id": "h1"}', "missing_field"),
        (b"{not json", "malformed_json"),
        (b"{\xff}", "bad_encoding"),
    ],
)
def test_decode_record_rejects_foreign_data(data: bytes, code: str) -> None:
    with pytest.raises(CodecError) as exc:
        decode_record(data)
    assert exc.value.code == code


def test_decode_record_reports_every_truncation() -> None:
    record = one_record(small_batch())
    for size in range(1, len(record)):
        with pytest.raises(CodecError) as exc:
            decode_record(record[:size])
        assert exc.value.code == "truncated", size


def test_decode_record_detects_any_single_byte_corruption() -> None:
    record = one_record(small_batch())
    for position in range(len(record)):
        corrupted = bytearray(record)
        corrupted[position] ^= 0x5A
        with pytest.raises(CodecError):
            decode_record(bytes(corrupted))


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({"version": 2}, "unsupported_version", "codec version 2"),
        ({"schema": 9}, "unsupported_version", "schema version 9"),
        ({"flags": 0x81}, "unsupported", "flags"),
        # every bit is a column of N floats (newer columns are skipped, not refused): a mask
        # announcing 16 columns over a 2-column payload is caught by the lengths
        ({"mask": 0xFFFF}, "inconsistent_lengths", "expected"),
        ({"count": 4}, "inconsistent_lengths", "expected"),
        ({"count": 0}, "inconsistent_lengths", "at least one"),
        ({"payload_len": 1}, "inconsistent_lengths", "header announces"),
    ],
)
def test_decode_record_checks_the_header(fields: dict[str, int], code: str, message: str) -> None:
    with pytest.raises(CodecError, match=message) as exc:
        decode_record(reseal(one_record(small_batch()), **fields))
    assert exc.value.code == code


def test_decode_record_reports_checksum_mismatch_and_trailing_bytes() -> None:
    record = one_record(small_batch())
    with pytest.raises(CodecError, match="checksum mismatch"):
        decode_record(record[:-1] + bytes([record[-1] ^ 1]))
    with pytest.raises(CodecError, match="inconsistent lengths"):
        decode_record(record + b"\x00")


def handmade(household_id: bytes, count: int, mask: int, raw: bytes, *, zlib_flag: bool) -> bytes:
    """A record built from the documented layout, independently of the encoder."""
    payload = zlib.compress(raw) if zlib_flag else raw
    body = HEADER.pack(MAGIC, 1, 1, int(zlib_flag), len(household_id), mask, count, len(payload))
    body += household_id + payload
    return body + struct.pack("<I", zlib.crc32(body))


VOLTAGE_BIT = 1 << MEASUREMENT_FIELDS.index("voltage_v")


@pytest.mark.parametrize("zlib_flag", [False, True])
def test_decode_record_reads_the_documented_layout(zlib_flag: bool) -> None:
    raw = struct.pack("<qq", 1_000, -400) + struct.pack("<dd", 230.5, np.nan)
    batch = decode_record(handmade(b"h1", 2, VOLTAGE_BIT, raw, zlib_flag=zlib_flag))
    assert batch.household_id == "h1"
    assert batch.timestamps_us.tolist() == [1_000, 600]
    np.testing.assert_array_equal(batch.columns["voltage_v"], [230.5, np.nan])
    assert batch.present_columns() == ("voltage_v",)


def test_decode_record_rejects_a_bad_household_id() -> None:
    raw = struct.pack("<q", 0)
    with pytest.raises(CodecError) as exc:
        decode_record(handmade(b"MAC 00002", 1, 0, raw, zlib_flag=False))
    assert exc.value.code == "bad_household_id"


@pytest.mark.parametrize("stamp", [MAX_TIMESTAMP_US + 1, MIN_TIMESTAMP_US - 1])
def test_decode_record_rejects_timestamps_a_datetime_cannot_hold(stamp: int) -> None:
    raw = struct.pack("<qd", stamp, 230.0)
    with pytest.raises(CodecError) as exc:
        decode_record(handmade(b"h1", 1, VOLTAGE_BIT, raw, zlib_flag=False))
    assert exc.value.code == "bad_timestamp"


def test_decode_record_stops_a_zip_bomb_at_the_announced_size() -> None:
    bomb = bytes(50_000_000)  # 50 MB of zeros, ~50 kB compressed
    with pytest.raises(CodecError, match="expected 48 ") as exc:
        decode_record(handmade(b"h1", 3, VOLTAGE_BIT, bomb, zlib_flag=True))
    assert exc.value.code == "inconsistent_lengths"


def test_decode_record_reports_corrupt_compressed_payload() -> None:
    record = handmade(b"h1", 1, 0, struct.pack("<q", 0), zlib_flag=False)
    body = reseal(record, flags=1)  # claims zlib, holds raw bytes
    with pytest.raises(CodecError) as exc:
        decode_record(body)
    assert exc.value.code == "corrupt"


@given(st.binary(max_size=200))
def test_decode_record_raises_only_codec_error_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_record(data)


@given(st.binary(min_size=0, max_size=120))
def test_decode_record_raises_only_codec_error_behind_our_magic(tail: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_record(MAGIC + tail)


@given(batches(max_rows=5), st.data())
def test_decode_record_raises_only_codec_error_on_resealed_garbage(
    batch: ReadingBatch, data: st.DataObject
) -> None:
    record = one_record(batch)
    fields = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "flags": st.integers(0, 255),
                "id_len": st.integers(0, 255),
                "mask": st.integers(0, 0xFFFF),
                "count": st.integers(0, 2**32 - 1),
            },
        )
    )
    with contextlib.suppress(CodecError):
        decode_record(reseal(record, **fields))
