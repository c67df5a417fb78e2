"""Which forecast an S3 event asks for, and whether it is already done (debouncing).

The archive rewrites a household-day's summary whenever that day's data changes: many
times during a live day (coverage grows as readings arrive), again for late or corrected
data, and S3/SQS deliver each event at least once and in no particular order. The rule
that turns this stream of events into **one forecast per household-day**:

1. **An event only says "household h changed".** Its day is not trusted as the as-of day.
   The handler lists h's summaries and forecasts as of h's *newest final day*: the newest
   day that is complete (``coverage >= final_coverage``) or that is followed by a later
   day (the meter moved on, so whatever the day misses is a gap). A day still filling up
   is not forecast from; it becomes final when it completes or the next day starts.
2. **Deterministic keys.** The forecast of (h, as-of day) has one key
   (:func:`result_key`); the plot data and the checkpoint too. Rewrites replace, never add.
3. **Input fingerprint.** The forecast object carries the SHA-256 of what it was computed
   from: the model settings, the as-of day and the (day, ETag) of every summary in the
   fitted window (:func:`input_fingerprint`). An event whose plan has the fingerprint
   already stored is a duplicate and does nothing (no fit, no write).
4. **Older events cannot overwrite newer forecasts.** A repeated, delayed or out-of-order
   event for an older day resolves, by rule 1, to the same newest final day as the latest
   event did, so it either matches the stored fingerprint (skipped) or, if some summary
   in the window really changed (a late correction), recomputes *that* forecast, in
   place. A forecast for an older as-of day is never written after a newer one exists.
   Two concurrent invocations can at worst write the same key with the same inputs.

Corrections to a month that is already over are not re-forecast (the newest final day
has moved on); they are in the next forecast's history.

Example:
    >>> import datetime as dt
    >>> d = dt.date
    >>> target_day({d(2024, 5, 1): 1.0, d(2024, 5, 2): 0.4})  # the 2nd is still filling up
    datetime.date(2024, 5, 1)
    >>> target_day({d(2024, 5, 1): 1.0, d(2024, 5, 2): 1.0})
    datetime.date(2024, 5, 2)
    >>> result_key("MAC000002", d(2013, 6, 14))
    'results/monthly/household=MAC000002/month=2013-06/as_of=2013-06-14.json'
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from shared.archive_layout import hive_value

__all__ = [
    "CHECKPOINT_PREFIX",
    "DEFAULT_FINAL_COVERAGE",
    "RESULTS_PREFIX",
    "CachedSummary",
    "Plan",
    "checkpoint_key",
    "decode_cache",
    "encode_cache",
    "input_fingerprint",
    "month_prefix",
    "plan_forecast",
    "result_key",
    "summaries_cache_key",
    "target_day",
]

RESULTS_PREFIX: Final = "results/monthly/"
CHECKPOINT_PREFIX: Final = "checkpoints/monthly/"
DEFAULT_FINAL_COVERAGE: Final = 0.99
"""A day is complete at 99 % coverage: a UCI day with 14 missing minutes still is."""

_CACHE_VERSION: Final = 1


def month_prefix(household_id: str, month: str) -> str:
    """Where the forecasts of one household-month (``YYYY-MM``) are listed from."""
    return f"{RESULTS_PREFIX}household={hive_value(household_id)}/month={month}/"


def result_key(household_id: str, as_of: dt.date) -> str:
    """The forecast JSON of (household, as-of day)."""
    return f"{month_prefix(household_id, f'{as_of:%Y-%m}')}as_of={as_of.isoformat()}.json"


def checkpoint_key(household_id: str) -> str:
    """The household's latest Prophet model (``model_to_json``), the next fit's warm start."""
    return f"{CHECKPOINT_PREFIX}household={hive_value(household_id)}/model.json"


def summaries_cache_key(household_id: str) -> str:
    """The household's summaries as last read (day -> ETag, kWh, coverage)."""
    return f"{CHECKPOINT_PREFIX}household={hive_value(household_id)}/summaries.json"


def target_day(
    coverage: Mapping[dt.date, float], final_coverage: float = DEFAULT_FINAL_COVERAGE
) -> dt.date | None:
    """The newest *final* day: complete, or followed by a later day (see the module)."""
    days = sorted(coverage)
    if not days:
        return None
    if coverage[days[-1]] >= final_coverage:
        return days[-1]
    return days[-2] if len(days) > 1 else None


def input_fingerprint(
    settings_fingerprint: str, as_of: dt.date, etags: Mapping[dt.date, str]
) -> str:
    """SHA-256 of the model settings, the as-of day and the (day, ETag) of its inputs."""
    digest = hashlib.sha256()
    digest.update(f"{settings_fingerprint}|{as_of.isoformat()}".encode())
    for day in sorted(etags):
        digest.update(f"|{day.isoformat()}={etags[day]}".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class CachedSummary:
    """What the handler keeps of one summary object (None values: it was not valid)."""

    etag: str
    kwh: float | None
    coverage: float | None


def encode_cache(entries: Mapping[dt.date, CachedSummary]) -> bytes:
    """The summaries cache as JSON (sorted, so equal caches are equal bytes)."""
    body = {
        "version": _CACHE_VERSION,
        "days": {
            day.isoformat(): [entry.etag, entry.kwh, entry.coverage]
            for day, entry in sorted(entries.items())
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decode_cache(data: bytes | None) -> dict[dt.date, CachedSummary]:
    """The cache written by :func:`encode_cache`; anything unreadable is an empty cache."""
    if not data:
        return {}
    try:
        body: Any = json.loads(data)
        if body.get("version") != _CACHE_VERSION:
            return {}
        return {
            dt.date.fromisoformat(day): CachedSummary(str(etag), kwh, coverage)
            for day, (etag, kwh, coverage) in body["days"].items()
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}


@dataclass(frozen=True)
class Plan:
    """What to do for a household: forecast ``as_of`` (with its fingerprint), or nothing."""

    household_id: str
    as_of: dt.date | None
    fingerprint: str | None
    window: tuple[dt.date, ...] = ()
    skip_reason: str | None = None


def plan_forecast(
    household_id: str,
    summaries: Mapping[dt.date, CachedSummary],
    *,
    settings_fingerprint: str,
    history_days: int | None,
    final_coverage: float = DEFAULT_FINAL_COVERAGE,
) -> Plan:
    """The forecast a change of ``household_id`` calls for, from its current summaries."""
    valid = {day: e.coverage for day, e in summaries.items() if e.coverage is not None}
    as_of = target_day(valid, final_coverage)
    if as_of is None:
        return Plan(household_id, None, None, skip_reason="no final day yet")
    first = dt.date.min if history_days is None else as_of - dt.timedelta(days=history_days - 1)
    window = {day: e.etag for day, e in summaries.items() if first <= day <= as_of}
    fingerprint = input_fingerprint(settings_fingerprint, as_of, window)
    return Plan(household_id, as_of, fingerprint, tuple(sorted(window)))
