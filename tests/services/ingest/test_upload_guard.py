"""The upload guard: every limit on its own, bounded reading, and the real file passes."""

from __future__ import annotations

import bz2
import gzip
import io

import pytest

from services.ingest.core.upload_guard import (
    DEFAULT_UPLOAD_LIMITS,
    UploadLimits,
    UploadRefused,
    compression_of,
    guarded_stream,
    refuse_stored_size,
)
from shared.uci import UCI_HEADER
from testing.reliability.bombs import ONE_ROW, gzip_copies, upload_bombs

TEXT = (UCI_HEADER + "\r\n").encode() + ONE_ROW * 3


class CountingSource(io.RawIOBase):
    """A source that says how much of it was read (the bomb must not be read whole)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self._data.readinto(buffer)
        self.read_bytes += n
        return n


def refusal(data: bytes, limits: UploadLimits = DEFAULT_UPLOAD_LIMITS) -> str | None:
    """The code the guard refuses ``data`` with, or ``None`` when it reads it all."""
    try:
        for _ in guarded_stream(io.BytesIO(data), limits):
            pass
    except UploadRefused as refused:
        return refused.rejection.code if refused.rejection.reason else "no reason"
    return None


@pytest.mark.parametrize(
    ("data", "text"),
    [(TEXT, TEXT), (gzip.compress(TEXT), TEXT), (gzip_copies(TEXT, 3), TEXT * 3)],
    ids=["plain", "gzip", "gzip-members"],
)
def test_upload_guard_reads_plain_and_gzip_text_unchanged(data, text):
    assert guarded_stream(io.BytesIO(data)).read() == text


@pytest.mark.parametrize("bomb", upload_bombs()[:4], ids=lambda b: b.name)
def test_upload_guard_refuses_each_bomb_reading_a_bounded_prefix(bomb):
    source = CountingSource(bomb.body)

    with pytest.raises(UploadRefused) as refused:
        for _ in guarded_stream(io.BufferedReader(source)):
            pass

    assert refused.value.rejection.code == bomb.code
    assert source.read_bytes <= 256 * 1024  # never the whole file, let alone its expansion


def test_upload_guard_each_limit_alone_refuses_one_row_copies():
    copies = gzip_copies(TEXT, 1) + gzip_copies(ONE_ROW * 4096, 64)  # 262,144 rows, 18 MB
    no_ratio = UploadLimits(max_compression_ratio=1e9, max_duplicate_ratio=None)

    assert refusal(copies) == "compression_ratio"
    assert refusal(copies, UploadLimits(max_compression_ratio=1e9, max_rows=100_000)) == (
        "too_many_rows"
    )
    assert refusal(copies, UploadLimits(max_compression_ratio=1e9, max_expanded_bytes=10**7)) == (
        "upload_too_large"
    )
    assert refusal(copies, no_ratio) is None  # duplicates are the batch handler's check


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (gzip.compress(gzip.compress(TEXT)), "nested_compression"),
        (gzip.compress(bz2.compress(TEXT)), "nested_compression"),
        (bz2.compress(TEXT), "unsupported_compression"),
        (b"PK\x03\x04" + TEXT, "unsupported_compression"),
        (gzip.compress(TEXT)[:-12], "bad_gzip"),  # truncated
        (gzip.compress(TEXT)[:20] + b"\x00garbage" * 10, "bad_gzip"),  # corrupt
        (gzip.compress(TEXT) + b"trailing text", "bad_gzip"),
        (TEXT + b"x" * 9000 + b"\r\n", "line_too_long"),
        (b"0" * 10_000, "line_too_long"),  # no newline at all
    ],
)
def test_upload_guard_refuses_unreadable_compression_and_long_lines(data, code):
    assert refusal(data) == code


def test_upload_guard_tolerates_zero_padding_after_gzip():
    assert refusal(gzip.compress(TEXT) + bytes(512)) is None
    assert refusal(gzip.compress(TEXT) + bytes(512) + b"x") == "bad_gzip"


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64])
def test_upload_guard_gzip_members_split_across_any_read_block(block):
    limits = UploadLimits(read_block_bytes=block)

    assert guarded_stream(io.BytesIO(gzip_copies(TEXT, 3)), limits).read() == TEXT * 3
    assert refusal(gzip.compress(gzip.compress(TEXT)), limits) == "nested_compression"


def test_upload_guard_line_limit_is_exact_across_blocks():
    line = b"x" * 100 + b"\n"
    limits = UploadLimits(max_line_bytes=100, read_block_bytes=7)

    assert refusal(line * 50, limits) is None
    assert refusal(line * 5 + b"y" * 101 + b"\n", limits) == "line_too_long"


def test_upload_guard_refuses_a_large_object_before_reading_it():
    with pytest.raises(UploadRefused) as refused:
        refuse_stored_size(DEFAULT_UPLOAD_LIMITS.max_expanded_bytes + 1, DEFAULT_UPLOAD_LIMITS)

    assert refused.value.rejection.code == "upload_too_large"
    refuse_stored_size(None, DEFAULT_UPLOAD_LIMITS)  # unknown size: the stream is checked


def test_upload_guard_compression_of_names_formats():
    assert [compression_of(h) for h in (b"\x1f\x8b\x08", b"BZh9", b"Date;Time")] == [
        "gzip",
        "bzip2",
        None,
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_expanded_bytes": 0},
        {"max_compression_ratio": 1},
        {"max_rows": 0},
        {"max_duplicate_ratio": 1.0},
    ],
)
def test_upload_limits_refuse_nonsense(kwargs):
    with pytest.raises(ValueError, match="must be"):
        UploadLimits(**kwargs)


@pytest.mark.slow
def test_upload_guard_full_uci_file_passes_every_default_limit(full_uci):
    with full_uci.open("rb") as source:
        lines = sum(1 for _ in guarded_stream(source))

    assert lines == 2_075_260  # header + 2,075,259 data lines


def test_upload_guard_april_slice_passes_every_default_limit():
    from tests.conftest import APRIL_2007

    with APRIL_2007.open("rb") as source:
        lines = sum(1 for _ in guarded_stream(source))

    assert lines == 43_201
