"""Pipeline controls offered to operators: replays (stream processing) and uploads (batch).

The gateway never runs a replay or parses an upload itself: a replay is started through
a ``ReplayStarter`` port (locally, the lead's composition wires it to ingest's replay),
and an upload is an object put under ``uploads/`` in the raw bucket, whose S3 event
starts ingest's batch handler, which writes ``reports/<key>.json`` when done. These are
the wire conventions between the services (S3 keys), not imports.

Example:
    >>> upload_key("april.txt.gz", "uci-0002")
    'uploads/uci-0002/april.txt.gz'
    >>> report_key_of("uploads/april.txt.gz")
    'reports/uploads/april.txt.gz.json'
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.gateway.core.queries import QueryError
from shared.clock import UTC_OFFSET_METADATA, format_utc_offset, parse_utc_offset
from shared.schema import HOUSEHOLD_ID_PATTERN

__all__ = [
    "REPORT_PREFIX",
    "UPLOAD_PREFIX",
    "UPLOAD_SUFFIXES",
    "ReplayJob",
    "ReplayRequest",
    "UploadStatus",
    "report_key_of",
    "upload_key",
    "upload_metadata",
]

UPLOAD_PREFIX: Final = "uploads/"
REPORT_PREFIX: Final = "reports/"
UPLOAD_SUFFIXES: Final = (".txt", ".txt.gz", ".csv", ".csv.gz")
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_HOUSEHOLD: Final = re.compile(HOUSEHOLD_ID_PATTERN)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReplayRequest(_Model):
    """What to replay: the UCI data as ``households`` live meters at ``speed``."""

    households: Annotated[int, Field(ge=1, le=10_000)] = 1
    speed: Annotated[str, StringConstraints(pattern=r"^(max|[0-9]{1,6}(\.[0-9]{1,3})?)$")] = "600"
    start: Literal["now", "original"] = "now"


class ReplayJob(_Model):
    """A replay's progress, as the dashboard shows it."""

    id: str
    request: ReplayRequest
    state: Literal["running", "finished", "failed"]
    fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    readings_published: int = 0
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    error: str | None = None


class UploadStatus(_Model):
    """An upload and, once ingest's batch handler is done, its report."""

    key: str
    report_key: str
    state: Literal["pending", "done"]
    report: dict[str, Any] | None = None


def upload_key(name: str, household: str | None) -> str:
    """``uploads/[<household>/]<name>``, or :class:`QueryError` for an unusable name."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise QueryError(
            "bad_name", "name is a plain file name (letters, digits, '_', '.', '-')", "name"
        )
    if not name.lower().endswith(UPLOAD_SUFFIXES):
        raise QueryError(
            "unsupported_format",
            f"an upload is a UCI file ending in {', '.join(UPLOAD_SUFFIXES)}",
            "name",
        )
    if household is not None and not _HOUSEHOLD.fullmatch(household):
        raise QueryError("bad_household", "malformed household id", "household")
    return f"{UPLOAD_PREFIX}{household}/{name}" if household else f"{UPLOAD_PREFIX}{name}"


def upload_metadata(utc_offset: str | None) -> dict[str, str]:
    """The object metadata declaring the UTC offset of an upload's naive UCI times.

    Ingest refuses an upload without it (``naive_timestamp``): the UCI format has no
    zone, and the UCI file's UTC+01:00 is not every household's clock.
    """
    if not utc_offset:
        raise QueryError(
            "missing_utc_offset",
            "UCI rows carry no time zone: give utc_offset (+HH:MM, -HH:MM, Z, or 'uci' "
            "for the UCI Sceaux file's fixed UTC+01:00)",
            "utc_offset",
        )
    try:
        offset = parse_utc_offset(utc_offset)
    except ValueError as error:
        raise QueryError("bad_utc_offset", str(error), "utc_offset") from error
    return {UTC_OFFSET_METADATA: format_utc_offset(offset)}


def report_key_of(key: str) -> str:
    """Where ingest's batch handler writes the report of upload ``key``."""
    return f"{REPORT_PREFIX}{key}.json"
