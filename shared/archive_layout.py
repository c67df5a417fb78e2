"""Where the archive keeps things: the object keys of the archive bucket, in one place.

Why here: the ingest archive writes these keys and the monthly service lists, parses and
reads them; services never import each other, so the layout is part of the contract.
Keys are Hive style (``household=``/``date=`` partitions, for Athena/Glue) and a pure
function of (household, UTC day), so a rewrite replaces its object and never adds one.
The Parquet format of a readings object is :mod:`shared.archive_parquet` (pyarrow, kept
apart so that cores and the shared layer need only the standard library for keys).

Example:
    >>> import datetime as dt
    >>> readings_key("h1", dt.date(2007, 4, 1))
    'readings/household=h1/date=2007-04-01/data.parquet'
    >>> summary_key("site:7", dt.date(2007, 4, 1), prefix="t/")
    't/summaries/household=site%3A7/date=2007-04-01.json'
    >>> parse_summary_key("summaries/household=site%3A7/date=2007-04-01.json")
    ('site:7', datetime.date(2007, 4, 1))
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

from shared.schema import HOUSEHOLD_ID_PATTERN

__all__ = [
    "CONFLICTS_PREFIX",
    "READINGS_PREFIX",
    "SUMMARIES_PREFIX",
    "conflicts_key",
    "hive_value",
    "parse_summary_key",
    "readings_key",
    "summary_key",
    "summary_prefix",
]

READINGS_PREFIX: Final = "readings/"
SUMMARIES_PREFIX: Final = "summaries/"
CONFLICTS_PREFIX: Final = "conflicts/"
"""Readings the archive replaced by a later, different copy (nothing triggers on it)."""

_HOUSEHOLD_ID: Final = re.compile(HOUSEHOLD_ID_PATTERN)
_SUMMARY_KEY: Final = re.compile(
    rf"^{SUMMARIES_PREFIX}household=(?P<household>[A-Za-z0-9_.%-]{{1,200}})/"
    r"date=(?P<date>\d{4}-\d{2}-\d{2})\.json$"
)


def hive_value(value: str) -> str:
    """Escape a partition value the way Hive does; of our id alphabet only ``:`` needs it."""
    return value.replace(":", "%3A")


def _unhive(value: str) -> str:
    return value.replace("%3A", ":")


def readings_key(household_id: str, day: dt.date, *, prefix: str = "") -> str:
    """The one Parquet object of a household-day."""
    return (
        f"{prefix}{READINGS_PREFIX}household={hive_value(household_id)}/"
        f"date={day.isoformat()}/data.parquet"
    )


def conflicts_key(household_id: str, day: dt.date, tag: str, *, prefix: str = "") -> str:
    """A Parquet object of the readings one archive write replaced (``tag`` makes it
    unique and deterministic: the write's stream position and a hash of the rows)."""
    return (
        f"{prefix}{CONFLICTS_PREFIX}household={hive_value(household_id)}/"
        f"date={day.isoformat()}/{tag}.parquet"
    )


def summary_prefix(household_id: str, *, prefix: str = "") -> str:
    """Where a household's daily summaries are listed from."""
    return f"{prefix}{SUMMARIES_PREFIX}household={hive_value(household_id)}/"


def summary_key(household_id: str, day: dt.date, *, prefix: str = "") -> str:
    """The daily summary of a household-day; deterministic, so a rewrite replaces it."""
    return f"{summary_prefix(household_id, prefix=prefix)}date={day.isoformat()}.json"


def parse_summary_key(key: str) -> tuple[str, dt.date] | None:
    """(household, day) of a summary key (no prefix), or None for any other key."""
    match = _SUMMARY_KEY.match(key)
    if match is None:
        return None
    household = _unhive(match["household"])
    if not _HOUSEHOLD_ID.match(household):
        return None
    try:
        return household, dt.date.fromisoformat(match["date"])
    except ValueError:
        return None
