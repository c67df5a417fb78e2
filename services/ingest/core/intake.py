"""Intake: raw payloads in, accepted per-household batches and quarantined items out.

Why a pure core: the HTTP endpoint, the batch upload handler and any future shell must
apply the same rules, and the rules must be testable without AWS. Nothing here logs,
reads the environment or touches the network; the clock (``now``) is injected.

Rules, in order:

* **the payload as a whole** (413/415/400 in HTTP): too large (``payload_too_large``),
  too many items (``too_many_items``), not UTF-8 (``bad_encoding``), not JSON
  (``malformed_json``), not a list nor ``{"readings": [...]}`` (``wrong_type``), extra
  envelope keys (``unknown_field``), CSV without the UCI header (``malformed_csv``, or
  ``bad_encoding`` for UTF-16/Latin-1 headers), no or a bad household for CSV
  (``missing_household``, ``bad_household_id``). The whole body is quarantined.
* **each item independently** (one bad item never rejects the others): structure with
  :func:`shared.validation.parse_reading`, physics with the vectorised
  :func:`shared.validation.sanity_mask`; every code of
  :class:`shared.validation.Rejection`, plus ``malformed_line`` and line-level
  ``bad_encoding`` for CSV rows.
* **repeats** of ``(household, timestamp)`` inside one payload, among *sane* items
  (a rejected item does not claim its slot; a repeat that is also insane is reported as
  rejected, which says more). The rule is **the last value wins**, as in the archive (a
  correction is sent after the reading it corrects):

  - copies with the *same values* as the winner are ``duplicate`` (the first of them is
    kept; idempotent, not an error);
  - copies with *different values* that a later item replaces are answered
    ``superseded`` (code ``conflict``), with the index of the item that won, and counted
    in ``totals.superseded``: a conflict is never silent.

  Across the chunks of one upload, a later chunk repeating a timestamp with the same
  values is a ``duplicate``; with different values it is accepted and published (the
  last wins), and the archive records what it replaced (``conflicts/``).
* **late and out-of-order** readings are accepted; each household's batch is sorted.
* **gap rows** (``?`` in UCI) are counted as ``missing``, never invented nor quarantined:
  the meter said "no data", which is not bad input.

Nothing is lost: for a processed payload
``accepted rows + len(quarantined) + duplicates + superseded + missing == received``; a payload
rejected as a whole is kept as one quarantined item holding its bytes.

Example:
    >>> import datetime as dt
    >>> now = dt.datetime(2007, 4, 2, tzinfo=dt.UTC)
    >>> body = (b'[{"household_id": "h1", "timestamp": "2007-04-01T00:01:00Z",'
    ...         b' "global_active_power_kw": 3.5},'
    ...         b' {"household_id": "h1", "timestamp": "2007-04-01T00:00:00Z",'
    ...         b' "global_active_power_kw": -1}]')
    >>> result = intake_json(body, source="http", now=now)
    >>> [o.status for o in result.outcomes], result.quarantined[0].reason[:15]
    (['accepted', 'rejected'], 'negative_power:')
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final, Literal, cast

import numpy as np
import numpy.typing as npt

from shared.batch import ReadingBatch, datetime_to_us, us_to_datetime
from shared.schema import (
    HOUSEHOLD_ID_PATTERN,
    MeterReading,
    Quarantined,
    StreamCoordinates,
)
from shared.uci import UCI_CLOCK, UciChunk, UciFormatError, iter_uci, parse_utc_offset
from shared.validation import (
    DEFAULT_LIMITS,
    DuplicateKeys,
    Rejection,
    SanityLimits,
    duplicate_key_rejection,
    loads_json,
    parse_reading,
    sanity_mask,
)

__all__ = [
    "DEFAULT_INTAKE_LIMITS",
    "EMPTY_SEEN",
    "IntakeLimits",
    "IntakeResult",
    "IntakeTotals",
    "ItemOutcome",
    "LineTap",
    "RawLines",
    "declared_offset",
    "household_rejection",
    "intake_json",
    "intake_uci",
    "intake_uci_chunk",
    "reject_payload",
    "uci_header_rejection",
]

Status = Literal["accepted", "rejected", "duplicate", "superseded"]
Int64Array = npt.NDArray[np.int64]

_HOUSEHOLD_RE: Final = re.compile(HOUSEHOLD_ID_PATTERN)
_GZIP_MAGIC: Final = b"\x1f\x8b"
_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")
_ENVELOPE_KEY: Final = "readings"

SEEN_DTYPE: Final = np.dtype([("t", np.int64), ("h", np.uint64)])
"""Repeat detection across chunks: accepted timestamps (sorted) and a hash of their values."""
EMPTY_SEEN: Final = np.empty(0, dtype=SEEN_DTYPE)
"""The repeat-detection state of a payload before its first chunk."""
Seen = npt.NDArray[np.void]


@dataclass(frozen=True)
class IntakeLimits:
    """Limits of one payload; past them the payload is rejected (and kept) as a whole.

    * ``max_items = 10_000``: items of a JSON list or data lines of a CSV body. A meter
      or gateway sends minutes or hours of data per call; a larger backlog belongs in a
      file under ``uploads/``, which is streamed without this limit. It also bounds the
      work (and the response, which lists every item) of one request.
    * ``max_body_bytes = 6 MiB``: Lambda refuses a synchronous request over 6 MB, so a
      larger body can only reach the app when it runs outside Lambda; 10,000 JSON
      readings take about 1.5 MB.
    * ``max_quarantined_bytes = 10 MiB``: how much of a rejected body is kept. S3 takes
      5 GiB in one PUT and the quarantine adapter sends SQS (256 KiB) only a pointer to
      the stored items, so storage does not bind; the bound is the function's memory (the
      item is built in memory, base64 adds a third). 10 MiB is API Gateway's own maximum
      payload, so behind API Gateway nothing is ever truncated; a truncated item says so
      in its reason, with the full size.
    * ``sanity``: the physical limits of :mod:`shared.validation`.
    """

    max_items: int = 10_000
    max_body_bytes: int = 6 * 1024 * 1024
    max_quarantined_bytes: int = 10 * 1024 * 1024
    sanity: SanityLimits = DEFAULT_LIMITS

    def __post_init__(self) -> None:
        if min(self.max_items, self.max_body_bytes, self.max_quarantined_bytes) < 1:
            raise ValueError("intake limits must be positive")


DEFAULT_INTAKE_LIMITS: Final = IntakeLimits()


@dataclass(frozen=True)
class ItemOutcome:
    """What happened to one item: its position (list index, or CSV line number, ``None``
    when unknown), the verdict and, when the item parsed, its household and time."""

    index: int | None
    status: Status
    household_id: str | None = None
    timestamp: dt.datetime | None = None
    code: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class IntakeTotals:
    """Counts of a payload (or of many chunks: totals add up with ``+``)."""

    received: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    missing: int = 0
    rejected_by_code: Mapping[str, int] = field(default_factory=dict)
    superseded: int = 0

    def __add__(self, other: IntakeTotals) -> IntakeTotals:
        return IntakeTotals(
            received=self.received + other.received,
            accepted=self.accepted + other.accepted,
            rejected=self.rejected + other.rejected,
            duplicates=self.duplicates + other.duplicates,
            missing=self.missing + other.missing,
            rejected_by_code=dict(Counter(self.rejected_by_code) + Counter(other.rejected_by_code)),
            superseded=self.superseded + other.superseded,
        )

    def metric_counts(self) -> dict[str, int]:
        """Metric name -> count, for the shells' EMF metrics (one name per reject code)."""
        counts = {
            "ReadingsReceived": self.received,
            "ReadingsAccepted": self.accepted,
            "ReadingsRejected": self.rejected,
            "ReadingsDuplicate": self.duplicates,
            "ReadingsSuperseded": self.superseded,
            "RowsMissing": self.missing,
        }
        counts.update(
            (f"ReadingsRejected_{code}", n) for code, n in sorted(self.rejected_by_code.items())
        )
        return counts


@dataclass(frozen=True, eq=False)
class IntakeResult:
    """The verdict on one payload (or one chunk of an upload).

    ``accepted`` holds one time-sorted batch per household. ``outcomes`` has one entry
    per item or data line (empty when the payload was rejected as a whole, or when the
    caller did not ask for them); ``payload_rejection`` is set when the payload was
    rejected as a whole, in which case ``quarantined`` holds the body as one item.
    """

    accepted: list[ReadingBatch]
    outcomes: list[ItemOutcome]
    quarantined: list[Quarantined]
    totals: IntakeTotals
    payload_rejection: Rejection | None = None

    @property
    def accepted_count(self) -> int:
        """Readings accepted, over all households."""
        return sum(len(batch) for batch in self.accepted)


# --------------------------------------------------------------------------- payload level


def reject_payload(
    body: bytes,
    rejection: Rejection,
    *,
    source: str,
    now: dt.datetime,
    limits: IntakeLimits = DEFAULT_INTAKE_LIMITS,
    body_size: int | None = None,
    received: int = 0,
) -> IntakeResult:
    """Reject a whole payload and keep its bytes (truncated past the quarantine limit).

    ``body_size`` is the real size when the caller already kept only a prefix of the body.
    """
    size = len(body) if body_size is None else body_size
    received = max(received, 1)  # the body counts as one item when it has no items
    kept = body[: limits.max_quarantined_bytes]
    reason = f"{rejection.code}: {rejection.reason}"
    if len(kept) < size:
        reason += f" (original truncated to its first {len(kept)} of {size} bytes)"
    item = Quarantined(original=kept, reason=reason, source=source, quarantined_at=now)
    return IntakeResult(
        accepted=[],
        outcomes=[],
        quarantined=[item],
        totals=IntakeTotals(
            received=received,
            rejected=received,
            rejected_by_code={rejection.code: received},
        ),
        payload_rejection=rejection,
    )


def household_rejection(household_id: str | None) -> Rejection | None:
    """Why a household id given outside the readings (CSV, upload key) is unusable."""
    if not household_id:
        return Rejection(
            "missing_household",
            "a UCI CSV body carries no household id: give one (the household query parameter)",
            "household_id",
        )
    if not _HOUSEHOLD_RE.fullmatch(household_id):
        shown = household_id if len(household_id) <= 80 else household_id[:77] + "..."
        return Rejection(
            "bad_household_id",
            f"household id {shown!r} does not match {HOUSEHOLD_ID_PATTERN}",
            "household_id",
        )
    return None


def declared_offset(value: str | None, *, how: str) -> dt.timedelta | Rejection:
    """The UTC offset a sender declared for UCI wall-clock times, or why there is none.

    The one policy for naive timestamps, whatever the source: a JSON reading without a
    zone is refused (``naive_timestamp``), and so are UCI rows (which never carry one)
    unless the sender states their offset. ``how`` tells the sender where to state it.
    """
    example = f"e.g. +01:00, or {UCI_CLOCK!r} for the UCI Sceaux file's fixed UTC+01:00"
    if not value or not value.strip():
        return Rejection(
            "naive_timestamp",
            "UCI rows carry no time zone and none was declared, so their times are "
            f"ambiguous: {how} ({example})",
            "utc_offset",
        )
    try:
        return parse_utc_offset(value)
    except ValueError as error:
        return Rejection("bad_utc_offset", f"{error}; {how}", "utc_offset")


def uci_header_rejection(first_line: bytes, error: UciFormatError) -> Rejection:
    """A UCI body with a bad first line: a wrong encoding, or not UCI at all."""
    try:
        first_line.decode("utf-8")
    except UnicodeDecodeError:
        wrong_encoding = True
    else:
        wrong_encoding = first_line.startswith(_UTF16_BOMS) or b"\x00" in first_line
    if wrong_encoding:
        return Rejection(
            "bad_encoding", "the CSV header is not UTF-8 text (UTF-16 or Latin-1?)", "body"
        )
    return Rejection("malformed_csv", str(error), "body")


# ------------------------------------------------------------------------------- JSON


def _json_items(document: Any) -> list[Any] | Rejection:
    """The items of ``[...]`` or ``{"readings": [...]}``."""
    if isinstance(document, DuplicateKeys) and _ENVELOPE_KEY in document:
        return duplicate_key_rejection(document, "the envelope")
    if isinstance(document, dict) and _ENVELOPE_KEY in document:
        extra = sorted(key[:40] for key in set(document) - {_ENVELOPE_KEY})
        if extra:
            return Rejection(
                "unknown_field",
                f"unknown envelope field(s) {extra[:5]}; the envelope is {{'readings': [...]}}",
                extra[0],
            )
        document = document[_ENVELOPE_KEY]
    if not isinstance(document, list):
        return Rejection(
            "wrong_type",
            f'the body must be a JSON list of readings or {{"readings": [...]}}, '
            f"got {_json_type(document)}",
            "body",
        )
    return document


def intake_json(
    body: bytes,
    *,
    source: str,
    now: dt.datetime,
    limits: IntakeLimits = DEFAULT_INTAKE_LIMITS,
    body_size: int | None = None,
) -> IntakeResult:
    """Validate a JSON body: a list of readings, or ``{"readings": [...]}``.

    ``source`` names where it came from (``"http"``); ``body_size`` is the real size when
    the shell kept only a prefix of a huge body.
    """
    size = len(body) if body_size is None else body_size

    def reject(rejection: Rejection, received: int = 0) -> IntakeResult:
        return reject_payload(
            body, rejection, source=source, now=now, limits=limits, body_size=size,
            received=received,
        )  # fmt: skip

    if size > limits.max_body_bytes:
        return reject(
            Rejection(
                "payload_too_large",
                f"the body has {size} bytes, more than the limit of {limits.max_body_bytes}; "
                "split it, or upload a file under uploads/",
                "body",
            )
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return reject(Rejection("bad_encoding", f"the body is not valid UTF-8: {exc}", "body"))
    try:
        document = loads_json(text)
    except (ValueError, RecursionError) as exc:
        return reject(Rejection("malformed_json", f"the body is not valid JSON: {exc}", "body"))
    items = _json_items(document)
    if isinstance(items, Rejection):
        return reject(items)
    if len(items) > limits.max_items:
        return reject(
            Rejection(
                "too_many_items",
                f"the body holds {len(items)} readings, more than the limit of "
                f"{limits.max_items}; split it, or upload a file under uploads/",
                "body",
            ),
            received=len(items),
        )
    return _intake_items(items, source=source, now=now, limits=limits)


def _item_bytes(item: Any) -> bytes:
    """One item re-serialised (ASCII-escaped, so even lone surrogates survive)."""
    if isinstance(item, DuplicateKeys):  # keep every copy of a repeated key
        return item.to_json().encode("ascii")
    return json.dumps(item, separators=(",", ":"), allow_nan=True).encode("ascii")


def _intake_items(
    items: Sequence[Any], *, source: str, now: dt.datetime, limits: IntakeLimits
) -> IntakeResult:
    outcomes: list[ItemOutcome | None] = [None] * len(items)
    quarantined: list[Quarantined] = []
    # normalised to UTC once, then shared by every item (it validates as-is: fast path)
    quarantined_at = Quarantined(
        original=b"", reason="-", source=source, quarantined_at=now
    ).quarantined_at

    def reject(index: int, rejection: Rejection, reading: MeterReading | None = None) -> None:
        household = reading.household_id if reading else None
        outcomes[index] = ItemOutcome(
            index,
            "rejected",
            household,
            reading.timestamp if reading else None,
            rejection.code,
            rejection.reason,
        )
        quarantined.append(
            Quarantined(
                original=_item_bytes(items[index]),
                reason=f"{rejection.code}: {rejection.reason}",
                source=source,
                coordinates=StreamCoordinates(
                    stream=source,
                    shard_or_partition="item",
                    sequence_or_offset=str(index),
                    partition_key=household,
                ),
                quarantined_at=quarantined_at,
            )
        )

    by_household: dict[str, list[tuple[int, MeterReading]]] = {}
    for index, item in enumerate(items):
        reading = parse_reading(item) if isinstance(item, Mapping) else None
        if reading is None:
            reject(
                index,
                Rejection("wrong_type", f"a reading must be a JSON object, got {_json_type(item)}"),
            )
        elif isinstance(reading, Rejection):
            reject(index, reading)
        else:
            by_household.setdefault(reading.household_id, []).append((index, reading))

    accepted: list[ReadingBatch] = []
    duplicates = superseded = 0
    now_us = datetime_to_us(now)
    for household, members in by_household.items():
        batch = ReadingBatch.from_readings(r for _, r in members)
        ok, rejected = sanity_mask(batch, now_us=now_us, limits=limits.sanity)
        for row, rejection in rejected:
            reject(members[row][0], rejection, members[row][1])
        repeats = _resolve_repeats(batch, ok, EMPTY_SEEN)
        for row in np.flatnonzero(ok).tolist():
            index, reading = members[row]
            status = repeats.status[row]
            if status == _KEPT:
                outcomes[index] = ItemOutcome(index, "accepted", household, reading.timestamp)
                continue
            winner = members[repeats.ref[row]][0]
            if status == _DUPLICATE:
                duplicates += 1
                outcomes[index] = ItemOutcome(
                    index,
                    "duplicate",
                    household,
                    reading.timestamp,
                    "duplicate",
                    f"same household and timestamp as item {winner}; the first one is kept",
                )
            else:
                superseded += 1
                outcomes[index] = ItemOutcome(
                    index,
                    "superseded",
                    household,
                    reading.timestamp,
                    "conflict",
                    f"item {winner} has the same household and timestamp with different "
                    "values and replaces this one (the last value wins)",
                )
        if repeats.keep.any():
            accepted.append(batch.take(repeats.keep).sorted_by_time())

    quarantined.sort(key=lambda q: int(q.coordinates.sequence_or_offset) if q.coordinates else 0)
    final = [o for o in outcomes if o is not None]
    return IntakeResult(
        accepted=accepted,
        outcomes=final,
        quarantined=quarantined,
        totals=_totals(len(items), accepted, final, duplicates, missing=0, superseded=superseded),
    )


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number" if isinstance(value, int | float) else "value")


def _totals(
    received: int,
    accepted: Sequence[ReadingBatch],
    outcomes: Sequence[ItemOutcome],
    duplicates: int,
    *,
    missing: int,
    rejected_by_code: Counter[str] | None = None,
    superseded: int = 0,
) -> IntakeTotals:
    codes = rejected_by_code or Counter(
        o.code for o in outcomes if o.status == "rejected" and o.code
    )
    return IntakeTotals(
        received=received,
        accepted=sum(len(b) for b in accepted),
        rejected=sum(codes.values()),
        duplicates=duplicates,
        missing=missing,
        rejected_by_code=dict(codes),
        superseded=superseded,
    )


_KEPT, _DUPLICATE, _SUPERSEDED = 0, 1, 2


@dataclass(frozen=True)
class _Repeats:
    """Per row: kept or not, its status (kept/duplicate/superseded) and the row that won
    (``-1`` when the winner is in an earlier chunk); and the new ``seen`` state."""

    keep: npt.NDArray[np.bool_]
    status: npt.NDArray[np.int8]
    ref: Int64Array
    seen: Seen


def _resolve_repeats(batch: ReadingBatch, ok: npt.NDArray[np.bool_], seen: Seen) -> _Repeats:
    """The last value of each timestamp wins; the first copy of that value is kept.

    ``seen`` (sorted by time) holds what earlier chunks accepted: a timestamp there with
    the same values makes this chunk's copies duplicates; with different values this
    chunk's last value is kept again (it replaces the earlier one downstream).
    """
    n = len(batch)
    keep = np.zeros(n, dtype=bool)
    status = np.zeros(n, dtype=np.int8)
    ref = np.full(n, -1, dtype=np.int64)
    rows = np.flatnonzero(ok)
    if not len(rows):
        return _Repeats(keep, status, ref, seen)
    stamps = batch.timestamps_us[rows]
    hashes = batch.row_hashes()[rows]
    order = np.lexsort((rows, stamps))  # by time, then payload order
    t, h, r = stamps[order], hashes[order], rows[order]
    last = np.append(t[1:] != t[:-1], True)
    group = np.cumsum(np.insert(last[:-1], 0, True)) - 1
    winner_hash = h[last]
    is_winner = h == winner_hash[group]
    positions = np.flatnonzero(is_winner)  # sorted: first winner-valued copy per group
    first_of_group = np.insert(group[positions][1:] != group[positions][:-1], 0, True)
    keeper = np.empty(len(winner_hash), dtype=np.int64)
    keeper[group[positions[first_of_group]]] = positions[first_of_group]
    kept = np.arange(len(t)) == keeper[group]
    group_t = t[last]
    found = np.zeros(len(group_t), dtype=bool)
    same = np.zeros(len(group_t), dtype=bool)
    at = np.zeros(len(group_t), dtype=np.int64)
    if len(seen):
        at = np.minimum(np.searchsorted(seen["t"], group_t), len(seen) - 1)
        found = seen["t"][at] == group_t
        same = found & (seen["h"][at] == winner_hash)
    kept &= ~same[group]
    keep[r] = kept
    status[r] = np.where(is_winner, np.where(kept, _KEPT, _DUPLICATE), _SUPERSEDED)
    ref[r] = np.where(is_winner & same[group], -1, r[keeper[group]])
    replaced = found & ~same
    new_seen = seen.copy()
    new_seen["h"][at[replaced]] = winner_hash[replaced]
    fresh = np.empty(int((~found).sum()), dtype=SEEN_DTYPE)
    fresh["t"], fresh["h"] = group_t[~found], winner_hash[~found]
    new_seen = np.insert(new_seen, np.searchsorted(new_seen["t"], fresh["t"]), fresh)
    return _Repeats(keep, status, ref, new_seen)


# -------------------------------------------------------------------------------- UCI


@dataclass(frozen=True)
class RawLines:
    """Raw lines of a UCI chunk as they were read, so quarantine keeps the exact bytes."""

    first_line_no: int
    lines: Sequence[bytes]

    def get(self, line_no: int) -> bytes | None:
        """The line without its line ending, or ``None`` outside the range."""
        offset = line_no - self.first_line_no
        if 0 <= offset < len(self.lines):
            return self.lines[offset].rstrip(b"\r\n")
        return None


class LineTap:
    """A binary line stream for :func:`shared.uci.iter_uci` that keeps the raw lines.

    Why: ``iter_uci`` reports malformed lines decoded (bad bytes replaced) and complete
    rows without their line numbers; the tap hands the chunk's raw lines to
    :func:`intake_uci_chunk`, which quarantines exact bytes with line numbers. The tap
    gunzips (so its lines are text lines); ``iter_uci`` reads a chunk's lines and then
    yields, so after each chunk :meth:`take` returns exactly what was read for it.
    """

    def __init__(self, stream: IO[bytes], *, gunzip: bool = True) -> None:
        if not hasattr(stream, "peek"):
            stream = io.BufferedReader(cast("io.RawIOBase", stream), 1 << 20)
        if gunzip and stream.peek(2)[:2] == _GZIP_MAGIC:  # type: ignore[attr-defined]
            gunzipped = gzip.GzipFile(fileobj=stream, mode="rb")
            stream = io.BufferedReader(cast("io.RawIOBase", gunzipped), 1 << 20)
        self._stream = stream
        self._lines = iter(stream)
        self._kept: list[bytes] = []
        self._first_kept = 1

    def peek(self, size: int = 0) -> bytes:
        """Bytes ahead, unread (``iter_uci`` sniffs for gzip)."""
        return self._stream.peek(size)  # type: ignore[attr-defined,no-any-return]

    def readline(self, size: int = -1) -> bytes:
        """One line, kept (``iter_uci`` reads the header this way)."""
        line = self._stream.readline(size)
        if line:
            self._kept.append(line)
        return line

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = next(self._lines)  # a file never yields b"", so every line counts
        self._kept.append(line)
        return line

    def take(self) -> RawLines:
        """The lines read since the previous call, with the line number of the first."""
        taken = RawLines(self._first_kept, self._kept)
        self._first_kept += len(self._kept)
        self._kept = []
        return taken

    def chunks(
        self, *, household_id: str, chunk_rows: int, utc_offset: dt.timedelta
    ) -> Iterator[tuple[UciChunk, RawLines]]:
        """:func:`shared.uci.iter_uci` over this stream, each chunk with its raw lines.

        ``utc_offset`` is the one the sender declared (:func:`declared_offset`).
        Raises :class:`shared.uci.UciFormatError` on a bad header, like ``iter_uci``;
        :meth:`take` then holds the first line.
        """
        stream = cast("IO[bytes]", self)  # it has what iter_uci reads: peek, readline, lines
        for chunk in iter_uci(
            stream, household_id=household_id, chunk_rows=chunk_rows, utc_offset=utc_offset
        ):
            yield chunk, self.take()


def _complete_row_lines(chunk: UciChunk, raw: RawLines) -> Int64Array | None:
    """Line number of each row of ``chunk.readings``, or ``None`` if it cannot be proven.

    A data line is complete unless it is blank, malformed or has a ``?``/empty value,
    the rules of :mod:`shared.uci`; the result is used only if the count matches.
    """
    malformed = {line_no for line_no, _, _ in chunk.malformed}
    numbers: list[int] = []
    for offset, line in enumerate(raw.lines):
        line_no = raw.first_line_no + offset
        body = line.rstrip(b"\r\n")
        if line_no < chunk.first_line_no or not body.strip() or line_no in malformed:
            continue
        if any(value.strip() in (b"?", b"") for value in body.split(b";")[2:]):
            continue
        numbers.append(line_no)
    if len(numbers) != len(chunk.readings):
        return None
    return np.array(numbers, dtype=np.int64)


def intake_uci_chunk(
    chunk: UciChunk,
    *,
    seen: Seen,
    source: str,
    now: dt.datetime,
    limits: IntakeLimits = DEFAULT_INTAKE_LIMITS,
    raw: RawLines | None = None,
    with_outcomes: bool = True,
) -> tuple[IntakeResult, Seen]:
    """One chunk of a UCI payload; returns the result and the new duplicate state.

    ``seen`` holds the (sorted) timestamps accepted from earlier chunks of the same
    payload, with a hash of their values (start with :data:`EMPTY_SEEN`), so repeats are
    found across chunks.
    ``raw`` (from :class:`LineTap`) gives exact bytes and line numbers to quarantined
    rows; without it a rejected row is re-serialised as JSON. ``with_outcomes=False``
    skips the per-line outcomes, for uploads of millions of rows.
    """
    household = chunk.readings.household_id
    batch = chunk.readings
    ok, rejected = sanity_mask(batch, now_us=datetime_to_us(now), limits=limits.sanity)
    repeats = _resolve_repeats(batch, ok, seen)
    keep = repeats.keep
    duplicate_rows = np.flatnonzero(ok & (repeats.status == _DUPLICATE))
    superseded_rows = np.flatnonzero(ok & (repeats.status == _SUPERSEDED))
    needs_lines = bool(rejected or len(duplicate_rows) or (with_outcomes and len(batch)))
    line_of = _complete_row_lines(chunk, raw) if raw is not None and needs_lines else None

    def row_line(row: int) -> int | None:
        return None if line_of is None else int(line_of[row])

    def stamp_of(row: int) -> dt.datetime:
        return us_to_datetime(int(batch.timestamps_us[row]))

    outcomes: list[ItemOutcome] = []
    quarantined: list[Quarantined] = []
    codes: Counter[str] = Counter()

    def quarantine(
        line_no: int | None, original: bytes, rejection: Rejection, stamp: dt.datetime | None
    ) -> None:
        codes[rejection.code] += 1
        coordinates = None
        if line_no is not None:
            coordinates = StreamCoordinates(
                stream=source,
                shard_or_partition="line",
                sequence_or_offset=str(line_no),
                partition_key=household,
            )
        quarantined.append(
            Quarantined(
                original=original,
                reason=f"{rejection.code}: {rejection.reason}",
                source=source,
                coordinates=coordinates,
                quarantined_at=now,
            )
        )
        if with_outcomes:
            outcomes.append(
                ItemOutcome(line_no, "rejected", household, stamp, rejection.code, rejection.reason)
            )

    for line_no, text, reason in chunk.malformed:
        original = raw.get(line_no) if raw is not None else None
        bad_bytes = "\ufffd" in text
        code = "bad_encoding" if bad_bytes else "malformed_line"
        note = f"line {line_no} is not valid UTF-8; " if bad_bytes else f"line {line_no}: "
        quarantine(line_no, original or text.encode("utf-8"), Rejection(code, note + reason), None)

    for row, rejection in rejected:
        row_no = row_line(row)
        original = raw.get(row_no) if raw is not None and row_no is not None else None
        if original is None:  # no raw line: the row itself, re-serialised
            original = batch.take([row]).to_readings()[0].model_dump_json().encode()
        quarantine(row_no, original, rejection, stamp_of(row))

    if with_outcomes:
        for row in np.flatnonzero(ok).tolist():
            if keep[row]:
                outcomes.append(ItemOutcome(row_line(row), "accepted", household, stamp_of(row)))
                continue
            first = row_line(int(repeats.ref[row])) if repeats.ref[row] >= 0 else None
            where = f"line {first}" if first is not None else "an earlier line"
            if repeats.status[row] == _DUPLICATE:
                outcomes.append(
                    ItemOutcome(
                        row_line(row),
                        "duplicate",
                        household,
                        stamp_of(row),
                        "duplicate",
                        f"same household and timestamp as {where}; the first one is kept",
                    )
                )
                continue
            outcomes.append(
                ItemOutcome(
                    row_line(row),
                    "superseded",
                    household,
                    stamp_of(row),
                    "conflict",
                    f"{where} has the same household and timestamp with different values "
                    "and replaces this one (the last value wins)",
                )
            )
        outcomes.sort(key=lambda o: -1 if o.index is None else o.index)

    kept = batch.take(keep).sorted_by_time()
    accepted = [kept] if len(kept) else []
    totals = _totals(
        chunk.rows,
        accepted,
        outcomes,
        len(duplicate_rows),
        missing=len(chunk.missing_timestamps_us),
        rejected_by_code=codes,
        superseded=len(superseded_rows),
    )
    return IntakeResult(accepted, outcomes, quarantined, totals), repeats.seen


def intake_uci(
    body: bytes,
    *,
    household_id: str | None,
    source: str,
    now: dt.datetime,
    limits: IntakeLimits = DEFAULT_INTAKE_LIMITS,
    body_size: int | None = None,
    utc_offset: str | None = None,
) -> IntakeResult:
    """Validate a UCI-format CSV body (``;``-separated, header line) of one household.

    The household comes from outside the rows (a query parameter), and so does the UTC
    offset of their naive times (``utc_offset``, see :func:`declared_offset`): without
    one a body that is UCI is refused as a whole (``naive_timestamp``). Gzip is refused
    here: a compressed body could expand far past the limits; upload such a file instead.
    """
    size = len(body) if body_size is None else body_size

    def reject(rejection: Rejection, received: int = 0) -> IntakeResult:
        return reject_payload(
            body, rejection, source=source, now=now, limits=limits, body_size=size,
            received=received,
        )  # fmt: skip

    if size > limits.max_body_bytes:
        return reject(
            Rejection(
                "payload_too_large",
                f"the body has {size} bytes, more than the limit of {limits.max_body_bytes}; "
                "upload the file under uploads/ instead",
                "body",
            )
        )
    bad_household = household_rejection(household_id)
    if bad_household is not None:
        return reject(bad_household)
    assert household_id is not None  # checked just above
    if body.startswith(_GZIP_MAGIC):
        return reject(
            Rejection(
                "bad_encoding",
                "gzip-compressed CSV is not accepted over HTTP; upload it under uploads/",
                "body",
            )
        )
    offset = declared_offset(utc_offset, how="add the utc_offset query parameter")
    tap = LineTap(io.BytesIO(body), gunzip=False)
    # One chunk of at most max_items lines; a second chunk means the body is too long.
    chunks = tap.chunks(
        household_id=household_id,
        chunk_rows=limits.max_items,
        utc_offset=offset if isinstance(offset, dt.timedelta) else dt.timedelta(0),
    )
    try:
        chunk, raw = next(chunks)
    except UciFormatError as error:  # not UCI at all says more than a missing offset
        return reject(uci_header_rejection(tap.take().get(1) or b"", error))
    except StopIteration:  # only a header (an empty body has no header: UciFormatError)
        return _empty_result()  # no time to read: nothing is ambiguous
    if isinstance(offset, Rejection):
        return reject(offset, received=chunk.rows)
    if next(chunks, None) is not None:
        return reject(
            Rejection(
                "too_many_items",
                f"the body holds more than {limits.max_items} lines; "
                "upload the file under uploads/ instead",
                "body",
            ),
            received=limits.max_items + 1,
        )
    result, _ = intake_uci_chunk(
        chunk, seen=EMPTY_SEEN, source=source, now=now, limits=limits, raw=raw
    )
    return result


def _empty_result() -> IntakeResult:
    return IntakeResult(accepted=[], outcomes=[], quarantined=[], totals=IntakeTotals())
