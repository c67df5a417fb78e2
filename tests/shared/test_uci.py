"""The streaming UCI parser, on the real file."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from shared.batch import ReadingBatch, datetime_to_us
from shared.uci import (
    UCI_CLOCK,
    UCI_HEADER,
    UCI_UTC_OFFSET,
    UciChunk,
    UciFormatError,
    format_utc_offset,
    iter_uci,
    parse_utc_offset,
    uci_timestamp_convention,
)
from tests.conftest import APRIL_2007
from tests.shared.strategies import assert_same_batch

MINUTE_US = 60_000_000
CET = dt.timezone(dt.timedelta(hours=1))


def us(*local: int) -> int:
    """UTC microseconds of a Sceaux clock time (fixed UTC+01:00)."""
    return datetime_to_us(dt.datetime(*local, tzinfo=CET))


def parse(source: object, **kwargs: object) -> list[UciChunk]:
    return list(iter_uci(source, **kwargs))  # type: ignore[arg-type]


def combined(chunks: list[UciChunk]) -> tuple[ReadingBatch, np.ndarray, list]:
    return (
        ReadingBatch.concat([c.readings for c in chunks]),
        np.concatenate([c.missing_timestamps_us for c in chunks]),
        [m for c in chunks for m in c.malformed],
    )


def uci_text(*lines: str) -> bytes:
    return "".join(f"{line}\r\n" for line in (UCI_HEADER, *lines)).encode()


@pytest.fixture(scope="module")
def april() -> list[UciChunk]:
    return parse(APRIL_2007)


def test_iter_uci_april_counts_complete_and_missing_rows(april: list[UciChunk]) -> None:
    [chunk] = april
    assert chunk.rows == 43_200
    assert len(chunk.readings) == 39_477
    assert len(chunk.missing_timestamps_us) == 3_723
    assert chunk.malformed == []
    assert chunk.first_timestamp == dt.datetime(2007, 3, 31, 23, tzinfo=dt.UTC)
    assert chunk.last_timestamp == dt.datetime(2007, 4, 30, 22, 59, tzinfo=dt.UTC)


def test_iter_uci_april_gap_is_exactly_the_documented_minutes(april: list[UciChunk]) -> None:
    gap = np.arange(us(2007, 4, 28, 0, 21), us(2007, 4, 30, 14, 23) + 1, MINUTE_US)
    assert len(gap) == 3_723
    np.testing.assert_array_equal(april[0].missing_timestamps_us, gap)


def test_iter_uci_april_first_row_values(april: list[UciChunk]) -> None:
    # 1/4/2007;00:00:00;3.480;0.238;239.530;14.400;2.000;1.000;18.000
    first = april[0].readings.slice(0, 1).to_readings()[0]
    assert first.household_id == "uci-sceaux"
    assert first.timestamp == dt.datetime(2007, 3, 31, 23, tzinfo=dt.UTC)
    assert (
        first.global_active_power_kw,
        first.global_reactive_power_kw,
        first.voltage_v,
        first.global_intensity_a,
        first.sub_metering_1_wh,
        first.sub_metering_2_wh,
        first.sub_metering_3_wh,
    ) == (3.48, 0.238, 239.53, 14.4, 2.0, 1.0, 18.0)
    assert first.energy_kwh is None
    assert first.interval_s is None


def test_iter_uci_april_is_a_strictly_increasing_minute_grid(april: list[UciChunk]) -> None:
    stamps = np.sort(
        np.concatenate([april[0].readings.timestamps_us, april[0].missing_timestamps_us])
    )
    np.testing.assert_array_equal(np.diff(stamps), MINUTE_US)
    assert np.all(np.diff(april[0].readings.timestamps_us) > 0)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (dt.timedelta(hours=1), dt.datetime(2007, 3, 31, 23, tzinfo=dt.UTC)),
        (dt.timedelta(0), dt.datetime(2007, 4, 1, tzinfo=dt.UTC)),
        (dt.timedelta(hours=2), dt.datetime(2007, 3, 31, 22, tzinfo=dt.UTC)),
    ],
)
def test_iter_uci_converts_local_time_with_the_fixed_offset(
    offset: dt.timedelta, expected: dt.datetime
) -> None:
    text = uci_text("1/4/2007;00:00:00;3.480;0.238;239.530;14.400;2.000;1.000;18.000")
    [chunk] = parse(io.BytesIO(text), utc_offset=offset)
    assert chunk.first_timestamp == expected


def test_iter_uci_keeps_the_dst_change_one_to_one() -> None:
    # 25/3/2007 02:00 does not exist in Paris wall time; the file has it (no DST jump).
    lines = [
        f"25/3/2007;0{h}:{m:02d}:00;1.0;0.1;240.0;4.2;0.0;0.0;0.0"
        for h in (1, 2, 3)
        for m in (0, 30)
    ]
    [chunk] = parse(io.BytesIO(uci_text(*lines)))
    assert np.all(np.diff(chunk.readings.timestamps_us) == 30 * MINUTE_US)


def test_uci_timestamp_convention_names_the_offset() -> None:
    text = uci_timestamp_convention()
    assert "UTC+01:00" in text
    assert "daylight-saving" in text
    assert "UTC+02:00" in uci_timestamp_convention(dt.timedelta(hours=2))
    assert "UTC-09:30" in uci_timestamp_convention(-dt.timedelta(hours=9, minutes=30))


def test_iter_uci_reads_plain_gzip_and_streams_alike(tmp_path: Path) -> None:
    plain = tmp_path / "april.txt"
    plain.write_bytes(gzip.decompress(APRIL_2007.read_bytes()))
    disguised = tmp_path / "april-gzipped.txt"  # gzip detected by magic, not suffix
    disguised.write_bytes(APRIL_2007.read_bytes())
    expected = combined(parse(APRIL_2007))

    class NoPeek(io.RawIOBase):
        """A non-seekable stream without peek, like a socket or a pipe."""

        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            return self._data.readinto(buffer)

    for source in (
        plain,
        str(plain),
        disguised,
        io.BytesIO(plain.read_bytes()),
        NoPeek(APRIL_2007.read_bytes()),
    ):
        batch, missing, malformed = combined(parse(source))
        assert_same_batch(batch, expected[0])
        np.testing.assert_array_equal(missing, expected[1])
        assert malformed == expected[2] == []


def test_iter_uci_leaves_the_callers_stream_open() -> None:
    stream = io.BytesIO(uci_text("1/4/2007;00:00:00;3.480;0.238;239.530;14.400;2.000;1.000;18.000"))
    assert sum(len(chunk.readings) for chunk in iter_uci(stream)) == 1
    assert not stream.closed


BAD_LINES = [
    ("1/4/2007;00:03:00;1.0;0.1;240.0", "expected 9 ';'-separated fields, found 5"),
    ("1/4/2007;00:04:00;1.0;0.1;240.0;4.2;0.0;0.0;0.0;9", "found 10"),
    ("1/4/2007;00:05:00;abc;0.1;240.0;4.2;0.0;0.0;0.0", "Global_active_power: cannot parse 'abc'"),
    ("1/4/2007;00:06:00;1.0;0.1;2.4.0;4.2;0.0;0.0;0.0", "Voltage: cannot parse '2.4.0'"),
    ("1/4/2007;00:07:00;1.0;0.1;nan;4.2;0.0;0.0;0.0", "Voltage: cannot parse 'nan'"),
    ("1/4/2007;00:08:00;inf;0.1;240.0;4.2;0.0;0.0;0.0", "Global_active_power: inf is not finite"),
    ("31/2/2007;00:09:00;1.0;0.1;240.0;4.2;0.0;0.0;0.0", "cannot parse date/time"),
    ("1/4/2007;24:00:00;1.0;0.1;240.0;4.2;0.0;0.0;0.0", "cannot parse date/time"),
    ("1/4/2007;00:11;1.0;0.1;240.0;4.2;0.0;0.0;0.0", "cannot parse date/time"),
    ("?;00:12:00;?;?;?;?;?;?;", "cannot parse date/time"),
    ("1/4/2007;00:13:00;1.0;0.1;240\r0;4.2;0.0;0.0;0.0", "carriage return"),
    ('"1/4/2007;00:14:00";1.0;0.1;240.0;4.2;0.0;0.0;0.0', "cannot parse date/time"),
    ("1/4/2007;00:15:00;1.0;0.1;2\xe40.0;4.2;0.0;0.0;0.0", "Voltage: cannot parse"),
]


def test_iter_uci_reports_malformed_lines_as_data() -> None:
    good = "1/4/2007;00:00:00;3.480;0.238;239.530;14.400;2.000;1.000;18.000"
    partial = "1/4/2007;00:01:00;1.0;?;240.0;4.2;0.0;0.0;0.0"
    gap = "1/4/2007;00:02:00;?;?;?;?;?;?;"
    text = uci_text(good, partial, gap, *(line for line, _ in BAD_LINES), "", good)
    text = text.replace("2\xe40.0".encode(), b"2\xff0.0")  # a byte that is not UTF-8
    [chunk] = parse(io.BytesIO(text))
    assert len(chunk.readings) == 2
    assert chunk.missing_timestamps_us.tolist() == [us(2007, 4, 1, 0, 1), us(2007, 4, 1, 0, 2)]
    assert [line_no for line_no, _, _ in chunk.malformed] == list(range(5, 5 + len(BAD_LINES)))
    for (_, raw, reason), (line, expected) in zip(chunk.malformed, BAD_LINES, strict=True):
        assert expected in reason
        assert raw.split(";")[:2] == line.replace("\xe4", "\ufffd").split(";")[:2]
    assert chunk.rows == 3 + len(BAD_LINES) + 1  # the blank line is not a row


def test_iter_uci_chunk_boundaries_do_not_change_the_result() -> None:
    lines = gzip.decompress(APRIL_2007.read_bytes()).split(b"\r\n")
    # two malformed lines, so some chunks take the slow text path
    lines[101] = b"1/4/2007;01:40:00;1.0;x;240.0;4.2;0.0;0.0;0.0"
    lines[30_002] = b"1/4/2007;01:41:00;1.0"
    text = b"\r\n".join(lines)
    reference = combined(parse(io.BytesIO(text), chunk_rows=1_000_000))
    assert [m[0] for m in reference[2]] == [102, 30_003]
    for chunk_rows in (997, 30_000):
        chunks = parse(io.BytesIO(text), chunk_rows=chunk_rows)
        assert all(c.rows <= chunk_rows for c in chunks)
        batch, missing, malformed = combined(chunks)
        assert_same_batch(batch, reference[0])
        np.testing.assert_array_equal(missing, reference[1])
        assert malformed == reference[2]
    head = b"\r\n".join(lines[:120])
    one_by_one = combined(parse(io.BytesIO(head), chunk_rows=1))
    assert_same_batch(one_by_one[0], reference[0].slice(0, 118))
    assert one_by_one[2] == reference[2][:1]


def test_iter_uci_handles_a_chunk_without_any_parsable_line() -> None:
    [chunk] = parse(io.BytesIO(uci_text("garbage", "")))
    assert (chunk.rows, len(chunk.readings), chunk.first_timestamp) == (1, 0, None)
    assert chunk.malformed == [(2, "garbage", "expected 9 ';'-separated fields, found 1")]


def test_iter_uci_refuses_a_file_that_is_not_uci() -> None:
    with pytest.raises(UciFormatError, match="header"):
        parse(io.BytesIO(b"LCLid,day,energy_sum\r\nMAC000002,2012-10-12,7.1\r\n"))
    with pytest.raises(ValueError, match="chunk_rows"):
        parse(io.BytesIO(uci_text()), chunk_rows=0)


class CountingReader(io.RawIOBase):
    """Counts the bytes pulled from a file, to show that parsing is incremental."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self._file.readinto(buffer)
        self.consumed += n
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


@pytest.mark.slow
def test_iter_uci_full_file_totals_order_and_bounded_memory(full_uci: Path) -> None:
    start = time.perf_counter()
    source = CountingReader(full_uci)
    chunks = iter_uci(source, chunk_rows=200_000)
    rows = complete = missing = 0
    last = None
    consumed_at_first_chunk = None
    tracemalloc.start()
    for chunk in chunks:
        consumed_at_first_chunk = consumed_at_first_chunk or source.consumed
        assert chunk.rows <= 200_000
        assert chunk.malformed == []
        rows += chunk.rows
        complete += len(chunk.readings)
        missing += len(chunk.missing_timestamps_us)
        stamps = np.sort(
            np.concatenate([chunk.readings.timestamps_us, chunk.missing_timestamps_us])
        )
        assert len(stamps) == chunk.rows
        assert np.all(np.diff(stamps) > 0)  # strictly increasing: no duplicate timestamps
        assert last is None or stamps[0] > last
        last = stamps[-1]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    elapsed = time.perf_counter() - start
    print(f"full UCI file: {rows:,} rows in {elapsed:.1f} s, peak traced {peak / 1e6:.0f} MB")
    assert (rows, complete, missing) == (2_075_259, 2_049_280, 25_979)
    assert last == us(2010, 11, 26, 21, 2)
    # streamed: the first chunk came after ~2 MB of the 19.5 MB gzip, not after all of it
    assert consumed_at_first_chunk is not None
    assert consumed_at_first_chunk < full_uci.stat().st_size / 4
    # bounded by the chunk: the whole file as one DataFrame of strings would be > 500 MB
    assert peak < 150e6


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("uci", 60),
        ("UCI", 60),
        ("+01:00", 60),
        (" 01:00", 60),  # an unencoded '+' in a query string arrives as a space
        ("+0100", 60),
        ("UTC+01:00", 60),
        ("-05:30", -330),
        ("Z", 0),
        ("UTC", 0),
        ("+00:00", 0),
        ("+14:00", 840),
    ],
)
def test_parse_utc_offset_reads_declared_offsets(text: str, minutes: int) -> None:
    offset = parse_utc_offset(text)

    assert offset == dt.timedelta(minutes=minutes)
    assert parse_utc_offset(format_utc_offset(offset)) == offset


@pytest.mark.parametrize("text", ["", "CET", "Europe/Paris", "+1", "+01:60", "+15:00", "1:00"])
def test_parse_utc_offset_refuses_what_is_not_a_fixed_offset(text: str) -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        parse_utc_offset(text)


def test_uci_clock_is_the_files_convention() -> None:
    assert parse_utc_offset(UCI_CLOCK) == UCI_UTC_OFFSET
    assert format_utc_offset(UCI_UTC_OFFSET) in uci_timestamp_convention()
