"""Validation of API queries: ranges, resolutions and months, refused with a reason.

Why limits: a minute-resolution answer over a year would be half a million points and
365 item reads; the limits keep every answer small and every query a bounded number of
reads, and a refused query says what is allowed (HTTP 422) instead of timing out.
Nothing here raises anything but :class:`QueryError`, whatever the input: that is what
keeps malformed queries from ever becoming a 500.

Example:
    >>> now = dt.datetime(2007, 4, 30, tzinfo=dt.UTC)
    >>> start, end = consumption_range(None, None, "hour", now=now)
    >>> start.isoformat(), end.isoformat()
    ('2007-04-29T00:00:00+00:00', '2007-04-30T00:00:00+00:00')
    >>> consumption_range(now - dt.timedelta(days=8), now, "minute", now=now)
    Traceback (most recent call last):
    ...
    services.gateway.core.queries.QueryError: range_too_long: minute resolution covers at most 7 ...
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Final

from services.gateway.core.consumption import Resolution

__all__ = [
    "DEFAULT_SPAN",
    "EARLIEST",
    "LATEST",
    "MAX_ANOMALY_SPAN",
    "MAX_HISTORY_SPAN",
    "MAX_SPAN",
    "QueryError",
    "anomaly_range",
    "consumption_range",
    "days_of",
    "history_range",
    "parse_month",
]

MAX_SPAN: Final[Mapping[str, dt.timedelta]] = {
    "minute": dt.timedelta(days=7),
    "hour": dt.timedelta(days=92),
    "day": dt.timedelta(days=1830),
}
DEFAULT_SPAN: Final[Mapping[str, dt.timedelta]] = {
    "minute": dt.timedelta(hours=6),
    "hour": dt.timedelta(days=1),
    "day": dt.timedelta(days=31),
}
MAX_ANOMALY_SPAN: Final = dt.timedelta(days=92)
MAX_HISTORY_SPAN: Final = dt.timedelta(days=31)
EARLIEST: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST: Final = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)
_MONTH: Final = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class QueryError(ValueError):
    """A refused query: ``code``, a reason for humans, and the offending parameter."""

    def __init__(self, code: str, reason: str, field: str | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.field = field


def _utc(value: dt.datetime, name: str) -> dt.datetime:
    """Aware UTC within the supported years (a naive time is read as UTC)."""
    aware = value.replace(tzinfo=dt.UTC) if value.utcoffset() is None else value
    try:
        aware = aware.astimezone(dt.UTC)
    except (OverflowError, ValueError) as error:
        raise QueryError("out_of_range", f"{name} is not a representable time", name) from error
    if not EARLIEST <= aware <= LATEST:
        raise QueryError(
            "out_of_range",
            f"{name} must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}",
            name,
        )
    return aware


def _range(
    start: dt.datetime | None,
    end: dt.datetime | None,
    *,
    now: dt.datetime,
    default: dt.timedelta,
    limit: dt.timedelta,
    what: str,
) -> tuple[dt.datetime, dt.datetime]:
    end_utc = _utc(end, "end") if end is not None else _utc(now, "now")
    start_utc = _utc(start, "start") if start is not None else max(EARLIEST, end_utc - default)
    if start_utc >= end_utc:
        raise QueryError("empty_range", "start must be before end", "start")
    if end_utc - start_utc > limit:
        raise QueryError("range_too_long", f"{what} covers at most {limit.days} days", "start")
    return start_utc, end_utc


def consumption_range(
    start: dt.datetime | None,
    end: dt.datetime | None,
    resolution: Resolution,
    *,
    now: dt.datetime,
) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` in UTC; defaults end at ``now`` and span :data:`DEFAULT_SPAN`."""
    if resolution not in MAX_SPAN:
        raise QueryError("bad_resolution", "resolution is minute, hour or day", "resolution")
    try:
        return _range(
            start,
            end,
            now=now,
            default=DEFAULT_SPAN[resolution],
            limit=MAX_SPAN[resolution],
            what=f"{resolution} resolution",
        )
    except QueryError as error:
        if error.code != "range_too_long" or resolution == "day":
            raise
        raise QueryError(
            error.code,
            f"{error.reason}; ask for hour or day resolution, or a shorter range",
            error.field,
        ) from None


def anomaly_range(
    start: dt.datetime | None, end: dt.datetime | None, *, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` of an anomaly query (default: the last 7 days)."""
    return _range(
        start,
        end,
        now=now,
        default=dt.timedelta(days=7),
        limit=MAX_ANOMALY_SPAN,
        what="an anomaly query",
    )


def history_range(
    start: dt.datetime | None, end: dt.datetime | None, *, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` of a forecast-history query (default: the last day, <= 31 days)."""
    return _range(
        start,
        end,
        now=now,
        default=dt.timedelta(days=1),
        limit=MAX_HISTORY_SPAN,
        what="a forecast history",
    )


def days_of(start: dt.datetime, end: dt.datetime) -> list[dt.date]:
    """The UTC days that ``[start, end)`` touches (the consumption items to read)."""
    last = (end - dt.timedelta(microseconds=1)).date()
    first = start.date()
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def parse_month(text: str | None, *, now: dt.datetime) -> str:
    """``YYYY-MM`` (default: the month of ``now``), within the supported years."""
    if text is None:
        return f"{now:%Y-%m}"
    match = _MONTH.fullmatch(text)
    if not match or not EARLIEST.year <= int(match.group(1)) < LATEST.year:
        raise QueryError("bad_month", "month is YYYY-MM, e.g. 2007-04", "month")
    return text
