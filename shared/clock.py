"""Declared UTC offsets for naive wall-clock times (the UCI convention among them).

Why a module of its own: the gateway's upload control and the ingest shells parse and
format the offset a sender declares, and must not pull in the UCI parser's pandas (the
gateway API's Lambda package leaves pandas out). :mod:`shared.uci` re-exports these names.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

__all__ = [
    "UCI_CLOCK",
    "UCI_UTC_OFFSET",
    "UTC_OFFSET_METADATA",
    "format_utc_offset",
    "parse_utc_offset",
    "uci_timestamp_convention",
]

UCI_UTC_OFFSET: Final = dt.timedelta(hours=1)
UCI_CLOCK: Final = "uci"
"""The declared offset that names the UCI file's own convention (fixed UTC+01:00)."""
UTC_OFFSET_METADATA: Final = "utc-offset"
"""S3 user metadata of an upload (``x-amz-meta-utc-offset``) declaring its UTC offset."""


def uci_timestamp_convention(utc_offset: dt.timedelta = UCI_UTC_OFFSET) -> str:
    """The timestamp convention in one sentence, for the README and for plot captions."""
    zone = f"UTC{format_utc_offset(utc_offset)}"
    return (
        "UCI timestamps are the local clock time of Sceaux without daylight-saving jumps "
        "(no duplicate or skipped minute across the DST changes, so not Europe/Paris wall "
        f"time); they are read as fixed {zone} and converted to UTC, which keeps the series "
        "strictly increasing and one-to-one."
    )


_OFFSET: Final = re.compile(r"^(?:UTC|GMT)?(?:(Z)|([+-])(\d{2}):?(\d{2}))?$", re.IGNORECASE)
_MAX_OFFSET: Final = dt.timedelta(hours=14)  # the widest real zone (UTC+14:00, Kiribati)


def parse_utc_offset(text: str) -> dt.timedelta:
    """The fixed UTC offset someone declared for naive wall-clock times.

    Why a declaration: a naive time is ambiguous (the UCI file's UTC+01:00 is not every
    household's clock), so ingest reads naive times only with an offset the sender states.
    Accepts ``+01:00``, ``-0530``, ``UTC+01:00``, ``Z``/``UTC`` (= ``+00:00``) and ``uci``
    (:data:`UCI_CLOCK`: the UCI Sceaux file's fixed UTC+01:00, see
    :func:`uci_timestamp_convention`). A leading space is read as ``+``: an unencoded
    ``+`` in a URL query string arrives as a space. Raises ``ValueError`` otherwise.

    >>> parse_utc_offset("+01:00") == parse_utc_offset("uci") == UCI_UTC_OFFSET
    True
    >>> parse_utc_offset(" 05:30"), parse_utc_offset("Z")
    (datetime.timedelta(seconds=19800), datetime.timedelta(0))
    """
    value = text[:40]
    if value[:1] == " " and value[1:2].isdigit():
        value = "+" + value[1:]
    value = value.strip()
    if value.lower() == UCI_CLOCK:
        return UCI_UTC_OFFSET
    match = _OFFSET.fullmatch(value)
    if not value or match is None:
        raise ValueError(
            f"UTC offset {text[:40]!r} is not +HH:MM, -HH:MM, Z or {UCI_CLOCK!r} "
            "(the UCI file's fixed UTC+01:00)"
        )
    _, sign, hours, minutes = match.groups()
    if sign is None:
        return dt.timedelta(0)
    offset = dt.timedelta(hours=int(hours), minutes=int(minutes))
    if int(minutes) >= 60 or offset > _MAX_OFFSET:
        raise ValueError(f"UTC offset {text[:40]!r} is outside -14:00..+14:00")
    return -offset if sign == "-" else offset


def format_utc_offset(offset: dt.timedelta) -> str:
    """``+01:00`` for one hour (what :func:`parse_utc_offset` reads back)."""
    minutes = offset // dt.timedelta(minutes=1)
    hours, rest = divmod(abs(minutes), 60)
    return f"{'-' if minutes < 0 else '+'}{hours:02d}:{rest:02d}"
