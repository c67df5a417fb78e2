"""moto's S3 listing and Kinesis shard paths made proportional to their work (local only).

moto keeps a bucket's keys and a shard's records in plain dicts and walks them whole:

* **S3 prefix listings** (``ListObjectsV2`` with ``Prefix``) copy the bucket's key dict
  and fetch every key's newest version through Python-level calls, then test the prefix:
  a listing of one household's summaries costs as much as listing the whole archive. Here
  only the key *names* are copied (in C) and tested; the versions are fetched for the
  matches alone. Same results (the rest of moto's listing code runs unchanged on them).
* **Kinesis GetRecords** walks the shard from its first record to the iterator's position
  on every call, so reading a shard end to end is quadratic and every idle poll of a long
  shard walks all of it; and **every put** copies the shard's sequence numbers into a
  list to find the last one. Records are stored in ascending sequence-number order, so
  the position is found by bisection and the last number read from the dict's end.

AWS does neither: these are emulator costs that grow with the size of the local stack,
not with the work of the call (measured in the README's fleet-day section). Our own
request patterns are the first thing to fix; these two cannot be fixed from the caller's
side (a narrower prefix, or fewer GetRecords, walks the same dict; the forecasts stream
holds 48 records per household). :func:`install` is
idempotent and is called by :class:`wattstream.local.server.EmbeddedAws` before it
serves.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["install"]

_installed = False
_lock = threading.Lock()


class _PrefixKeys:
    """The ``items()`` of a bucket's keys, restricted to names starting with ``prefix``."""

    def __init__(self, store: Any, prefix: str) -> None:
        self.store, self.prefix = store, prefix

    def items(self) -> Iterator[tuple[str, Any]]:
        names = list(dict.keys(self.store))  # one C-level copy: safe beside writers
        prefix = self.prefix
        for name in [n for n in names if n.startswith(prefix)]:
            try:
                yield name, self.store[name]
            except (KeyError, IndexError):  # deleted since the copy
                continue


class _PrefixBucket:
    """What moto's ``list_objects`` reads of a bucket: its keys (nothing else)."""

    def __init__(self, bucket: Any, prefix: str) -> None:
        self.keys = _PrefixKeys(bucket.keys, prefix)


def _install_s3() -> None:
    from moto.s3.models import FakeTableStorageBucket, S3Backend

    original = S3Backend.list_objects

    def list_objects(
        self: Any,
        bucket: Any,
        prefix: str | None,
        delimiter: str | None,
        marker: str | None,
        max_keys: int | None,
    ) -> Any:
        if prefix and not isinstance(bucket, FakeTableStorageBucket):
            bucket = _PrefixBucket(bucket, prefix)
        return original(self, bucket, prefix, delimiter, marker, max_keys)

    S3Backend.list_objects = list_objects  # type: ignore[method-assign]


def _install_kinesis() -> None:
    from moto.kinesis.models import Shard

    def get_records(self: Any, last_sequence_id: str, limit: int | None) -> Any:
        last = int(last_sequence_id)
        numbers = list(self.records.keys())  # ascending: records are appended in order
        start = bisect.bisect_right(numbers, last)
        chosen = numbers[start : start + limit] if limit is not None else numbers[start:]
        results = []
        for number in chosen:
            record = self.records.get(number)
            if record is not None:
                results.append(record)
                last = number
        behind = 0.0
        if results and numbers:
            newest = self.records.get(numbers[-1])
            if newest is not None:
                behind = (newest.created_at - results[-1].created_at).total_seconds()
        return results, last, int(behind * 1000)

    def get_max_sequence_number(self: Any) -> int:
        return next(reversed(self.records), 0)

    def get_min_sequence_number(self: Any) -> int:
        return next(iter(self.records), 0)

    Shard.get_records = get_records  # type: ignore[method-assign]
    Shard.get_max_sequence_number = get_max_sequence_number  # type: ignore[method-assign]
    Shard.get_min_sequence_number = get_min_sequence_number  # type: ignore[method-assign]


def install() -> None:
    """Patch moto's S3 prefix listing and Kinesis GetRecords (once per process)."""
    global _installed
    with _lock:
        if _installed:
            return
        _install_s3()
        _install_kinesis()
        _installed = True
