"""Hostile batch uploads: decompression bombs and a traversal key, built in memory.

Each bomb is made without ever holding (or writing) what it expands to: a gzip file may
hold several members one after the other, and reading it yields their texts in turn,
so ``n`` copies of the gzip of a block expand to ``n`` copies of the block. The 10 GiB
nested bomb is 160 copies of the gzip of 64 MiB of zeros (a 10 MB inner gzip), gzipped
again: ~24 KB.

Used by the batch-upload tests (the malformed-input corpus) and by the ``bombs``
scenario of ``python -m bench reliability``.
"""

from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass
from typing import Final

from shared.uci import UCI_HEADER

__all__ = ["ONE_ROW", "Bomb", "gzip_copies", "upload_bombs"]

ONE_ROW: Final = b"16/12/2006;17:24:00;4.216;0.418;234.840;18.400;0.000;1.000;17.000\r\n"
_HEADER: Final = UCI_HEADER.encode() + b"\r\n"
_MIB: Final = 1024 * 1024


@dataclass(frozen=True)
class Bomb:
    """One hostile upload and the verdict expected of the batch handler.

    ``household`` is the key's folder (``uploads/<household>/<name>``); ``code`` the
    rejection code of the ``rejected`` report; ``expands_to`` the bytes it would give
    if read naively.
    """

    name: str
    file_name: str
    body: bytes
    code: str
    expands_to: int
    household: str = "bomb-target"

    @property
    def key(self) -> str:
        return f"uploads/{self.household}/{self.file_name}"


@functools.cache
def _gzip_of(block: bytes) -> bytes:
    return gzip.compress(block, compresslevel=9, mtime=0)


def gzip_copies(block: bytes, copies: int) -> bytes:
    """A gzip file that expands to ``copies`` x ``block`` (one member per copy)."""
    return _gzip_of(block) * copies


def upload_bombs() -> list[Bomb]:
    """The upload cases of issue 13, each expected to be refused cleanly, once."""
    zeros = bytes(64 * _MIB)
    rows = ONE_ROW * 65_536
    valid = _HEADER + b"".join(ONE_ROW.replace(b"17:24", f"17:2{m}".encode()) for m in (4, 5, 6))
    return [
        Bomb(
            "nested-10GiB",
            "nested.txt.gz",
            gzip.compress(gzip_copies(zeros, 160), compresslevel=9, mtime=0),
            "nested_compression",
            160 * len(zeros),
        ),
        Bomb(
            "gzip-of-gzip-3-rows",
            "double.txt.gz",
            gzip.compress(gzip.compress(valid, mtime=0), mtime=0),
            "nested_compression",
            len(valid),
        ),
        Bomb(
            "zeros-2GiB-no-newline",
            "zeros.txt.gz",
            gzip_copies(zeros, 32),
            "line_too_long",
            32 * len(zeros),
        ),
        Bomb(
            "one-row-8388608-times",
            "copies.txt.gz",
            _gzip_of(_HEADER) + gzip_copies(rows, 128),
            "compression_ratio",
            len(_HEADER) + 128 * len(rows),
        ),
        Bomb(
            "traversal-household",
            "x.txt",
            valid,
            "bad_household_id",
            len(valid),
            household="victim/../attacker",
        ),
    ]
