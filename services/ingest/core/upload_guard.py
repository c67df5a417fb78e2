"""Bounded reading of an uploaded file: decompression bombs are refused, once, cleanly.

Why: a batch upload is a file anyone with write access to ``uploads/`` can put there. A
1.4 KB gzip can expand to 10 GiB, a 2 MB gzip to 2 GiB of zeros without a newline (one
"line" the size of the memory), a 1.5 MB gzip to 8 million copies of one row. Read
naively, such a file exhausts the function (memory, then its timeout), the message is
retried as if it were an outage and finally dead-lettered, with no report. Here every
byte handed to the parser has passed the limits of :class:`UploadLimits`, checked as the
stream goes (memory stays bounded by one read block, whatever the file), and a violation
is raised as :class:`UploadRefused`, which the shell turns into a ``rejected`` report:
bad input, never an infrastructure failure.

Pure: no AWS, no environment. The stream to read (an S3 body, a file) is passed in.

Example:
    >>> import gzip, io
    >>> bomb = gzip.compress(gzip.compress(b"Date;Time;...\\n"))
    >>> try:
    ...     guarded_stream(io.BytesIO(bomb), UploadLimits()).read()
    ... except UploadRefused as refused:
    ...     print(refused.rejection.code)
    nested_compression
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import IO, Final

import numpy as np

from shared.validation import Rejection

__all__ = [
    "DEFAULT_UPLOAD_LIMITS",
    "GuardedStream",
    "UploadLimits",
    "UploadRefused",
    "compression_of",
    "guarded_stream",
]

MiB: Final = 1024 * 1024

_MAGIC: Final = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
)
_NEWLINE: Final = 10


@dataclass(frozen=True)
class UploadLimits:
    """Limits of one uploaded file; past any of them the file is refused as a whole.

    Measured on the full UCI file (2,075,259 lines: 132,960,755 bytes of text, 19,458,452
    bytes gzipped, ratio 6.83, at most 7.01 over any prefix past 1 MiB, lines of at most
    ~70 bytes), which passes every default with a wide margin:

    * ``max_expanded_bytes = 512 MiB``: the text after decompression (or the plain
      file), ~4x the full UCI file (~8 million minute rows). Also the most an object may
      weigh as stored: a larger object is refused before it is read.
    * ``max_compression_ratio = 100``: text / gzip bytes read so far, checked once
      ``ratio_check_after_bytes`` (4 MiB) of text came out. CSV of numbers compresses
      5-20x (UCI: 6.8, its gap rows a little more); zeros or one repeated row compress
      300-1,000x, which only a bomb does.
    * nested compression: the text of a gzip that is itself compressed (gzip, bzip2,
      xz, zstd, zip, ...) is refused (``nested_compression``), and a plain upload in a
      format other than gzip too (``unsupported_compression``): nothing is decompressed
      twice.
    * ``max_line_bytes = 8 KiB``: a UCI line is ~70 bytes; a longer line is not the
      format. Checked on the raw blocks, so a 2 GiB line is never held: the file is
      refused after 8 KiB of it (``line_too_long``).
    * ``max_rows = 5,000,000``: data lines (~2.4x the full UCI file: 9.5 years of
      minutes of one household); ``None`` disables it (``too_many_rows``).
    * ``max_duplicate_ratio = 0.5``: share of rows repeating a (household, timestamp)
      already read, over the rows so far, checked from ``duplicate_check_after_rows``
      (10,000) rows on, before each chunk is published: 8 million copies of one row are
      refused on the first chunk. A file sent twice in one upload is exactly 0.5 and
      passes; ``None`` disables it (``duplicate_rows``).
    """

    max_expanded_bytes: int = 512 * MiB
    max_compression_ratio: float = 100.0
    ratio_check_after_bytes: int = 4 * MiB
    max_line_bytes: int = 8 * 1024
    max_rows: int | None = 5_000_000
    max_duplicate_ratio: float | None = 0.5
    duplicate_check_after_rows: int = 10_000
    read_block_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        sizes = (self.max_expanded_bytes, self.max_line_bytes, self.read_block_bytes)
        if min(sizes) < 1 or self.max_compression_ratio <= 1:
            raise ValueError("upload limits must be positive (and the ratio above 1)")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError("max_rows must be positive, or None")
        if self.max_duplicate_ratio is not None and not 0 < self.max_duplicate_ratio < 1:
            raise ValueError("max_duplicate_ratio must be in (0, 1), or None")


DEFAULT_UPLOAD_LIMITS: Final = UploadLimits()


class UploadRefused(Exception):
    """The upload breaks a limit; ``rejection`` says which, for the report."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(f"{rejection.code}: {rejection.reason}")
        self.rejection = rejection


def _refuse(code: str, reason: str) -> UploadRefused:
    return UploadRefused(Rejection(code, reason, "body"))


def compression_of(head: bytes) -> str | None:
    """The compression format whose magic bytes start ``head``, if any."""
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def refuse_stored_size(size: int | None, limits: UploadLimits) -> None:
    """Refuse an object whose stored size alone is over the limit (before reading it)."""
    if size is not None and size > limits.max_expanded_bytes:
        raise _refuse(
            "upload_too_large",
            f"the object has {size} bytes, more than the limit of "
            f"{limits.max_expanded_bytes}; split the file",
        )


class _Gunzip:
    """Incremental gzip decoding with at most ``size`` bytes out per call.

    zlib with ``max_length``: never more output than asked, whatever the ratio.
    Concatenated members are read in turn (what ``gzip`` does); ``consumed`` is the
    exact count of compressed bytes decoded so far, for the ratio check.
    """

    def __init__(self, source: IO[bytes], block: int) -> None:
        self._source = source
        self._block = block
        self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""  # compressed bytes read but not yet decoded
        self.consumed = 0
        self._ended = False

    def read(self, size: int) -> bytes:
        while not self._ended:
            if self._decoder.eof:  # another member, or the end (zero padding tolerated)
                rest = self._decoder.unused_data
                while len(rest) < 2 and (more := self._source.read(self._block)):
                    rest += more
                if compression_of(rest) != "gzip":
                    while rest and not rest.strip(b"\x00"):
                        rest = self._source.read(self._block)
                    if rest:
                        raise _refuse("bad_gzip", "data after the end of the gzip stream")
                    self._ended = True
                    return b""
                self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._pending = rest
            data = self._pending or self._source.read(self._block)
            if not data:
                raise _refuse("bad_gzip", "the gzip stream is truncated")
            try:
                out = self._decoder.decompress(data, size)
            except zlib.error as error:
                raise _refuse("bad_gzip", f"the gzip stream is corrupt: {error}") from None
            # At the end of a member zlib leaves the rest in unused_data (and, with
            # max_length, the same bytes in unconsumed_tail): count and keep it once.
            left = self._decoder.unused_data if self._decoder.eof else self._decoder.unconsumed_tail
            self._pending = b"" if self._decoder.eof else left
            self.consumed += len(data) - len(left)
            if out:
                return out
        return b""


class GuardedStream(io.RawIOBase):
    """The text of an upload (gunzipped when it is gzip), checked block by block.

    Raises :class:`UploadRefused` from ``read``/``readinto`` as soon as a limit is
    broken; the caller (a line reader) never sees the offending bytes.
    """

    def __init__(self, source: IO[bytes], limits: UploadLimits = DEFAULT_UPLOAD_LIMITS) -> None:
        super().__init__()
        self.limits = limits
        self._source = source
        head = _read_at_least(source, 8)
        kind = compression_of(head)
        self.compressed = kind == "gzip"
        self._gunzip: _Gunzip | None = None
        if kind is None:
            self._pending = head
        elif self.compressed:
            self._gunzip = _Gunzip(_Prefixed(head, source), limits.read_block_bytes)
            self._pending = _read_at_least(self._gunzip, 8)  # enough to know the format
            inner = compression_of(self._pending)
            if inner is not None:
                raise _refuse(
                    "nested_compression",
                    f"the gzip holds {inner}-compressed data, not text; a file is "
                    "decompressed once: upload the text, or its gzip",
                )
        else:
            raise _refuse(
                "unsupported_compression",
                f"the file is {kind}-compressed; uploads are text or gzip (.txt, .txt.gz)",
            )
        self.expanded = 0
        self.lines = 0
        self._line = 0  # bytes of the current (unfinished) line
        self._check(self._pending)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        size = len(buffer)
        if self._pending:
            data, self._pending = self._pending[:size], self._pending[size:]
        else:
            block = min(size, self.limits.read_block_bytes)
            data = self._gunzip.read(block) if self._gunzip else self._source.read(block)
            self._check(data)
        buffer[: len(data)] = data
        return len(data)

    def _check(self, data: bytes) -> None:
        limits = self.limits
        self.expanded += len(data)
        if self.expanded > limits.max_expanded_bytes:
            raise _refuse(
                "upload_too_large",
                f"the file expands past {limits.max_expanded_bytes} bytes of text; split it",
            )
        if self._gunzip is not None and self.expanded >= limits.ratio_check_after_bytes:
            ratio = self.expanded / max(self._gunzip.consumed, 1)
            if ratio > limits.max_compression_ratio:
                raise _refuse(
                    "compression_ratio",
                    f"{self._gunzip.consumed} gzip bytes expanded to {self.expanded} bytes "
                    f"(ratio {ratio:.0f}, limit {limits.max_compression_ratio:g}): a "
                    "compression bomb, or not meter data",
                )
        newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == _NEWLINE)
        if len(newlines):
            finished = np.diff(newlines, prepend=-1 - self._line) - 1  # lengths, \n excluded
            self._line = len(data) - 1 - int(newlines[-1])
        else:
            finished = newlines
            self._line += len(data)
        too_long = np.flatnonzero(finished > limits.max_line_bytes)
        if len(too_long) or self._line > limits.max_line_bytes:
            line_no = self.lines + 1 + (int(too_long[0]) if len(too_long) else len(newlines))
            raise _refuse(
                "line_too_long",
                f"line {line_no} is longer than {limits.max_line_bytes} bytes (a UCI line "
                "has ~70): not the UCI format",
            )
        self.lines += len(newlines)
        if limits.max_rows is not None and self.lines > limits.max_rows + 1:  # + the header
            raise _refuse(
                "too_many_rows",
                f"the file has more than {limits.max_rows} data lines; split it",
            )


class _Prefixed:
    """``head`` then the rest of ``source`` (the bytes sniffed for magic are not lost)."""

    def __init__(self, head: bytes, source: IO[bytes]) -> None:
        self._head, self._source = head, source

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._source.read(size)
        if 0 <= size < len(self._head):
            data, self._head = self._head[:size], self._head[size:]
            return data
        data, self._head = self._head, b""
        return data + self._source.read(size - len(data) if size >= 0 else -1)


def _read_at_least(source: IO[bytes] | _Gunzip, size: int) -> bytes:
    data = b""
    while len(data) < size and (part := source.read(size - len(data))):
        data += part
    return data


def guarded_stream(source: IO[bytes], limits: UploadLimits = DEFAULT_UPLOAD_LIMITS) -> IO[bytes]:
    """A buffered line-readable stream of the upload's text, under ``limits``.

    Raises :class:`UploadRefused` when the head already breaks a limit (compression),
    and later from any read that would cross one.
    """
    return io.BufferedReader(GuardedStream(source, limits), 1 << 20)
