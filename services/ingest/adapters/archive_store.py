"""S3 adapter of the archive: one Parquet object per household-day, plus its JSON summary.

Keys come from :mod:`shared.archive_layout` (hive style, deterministic) and the Parquet
format from :mod:`shared.archive_parquet`, both shared with the archive's readers, so
every rewrite replaces an object and nothing is ever duplicated. The stream position
merged into a day object is kept in its S3 user metadata (``stream``, ``shard-id``,
``sequence-number``), not in the file, so the Parquet bytes depend on the rows alone: a
replayed stream produces byte-for-byte the same archive.

A summary is rewritten only when its JSON differs from the stored one, because the monthly
service reacts to every summary write through S3 events.
"""

from __future__ import annotations

import hashlib
from typing import Any

from services.ingest.core.archive import (
    DailySummary,
    DayKey,
    StoredDay,
    StreamPosition,
    split_by_day,
)
from shared.archive_layout import conflicts_key, readings_key, summary_key
from shared.archive_parquet import decode_day, encode_day
from shared.batch import ReadingBatch
from shared.s3 import get_object_or_none

# decode_day/encode_day live in shared.archive_parquet; re-exported for existing callers.
__all__ = ["S3ArchiveStore", "decode_day", "encode_day"]


class S3ArchiveStore:
    """The :class:`~services.ingest.core.archive.ArchiveStore` on S3.

    ``s3`` is a boto3 S3 client (injected: never created here); ``prefix`` is prepended to
    every key (e.g. ``"tenant-a/"``), the default puts ``readings/`` and ``summaries/`` at
    the bucket root.
    """

    def __init__(self, bucket: str, *, s3: Any, prefix: str = "") -> None:
        self.bucket = bucket
        self.s3 = s3
        self.prefix = prefix

    def day_key(self, key: DayKey) -> str:
        """The S3 key of a household-day's Parquet object."""
        return readings_key(key.household_id, key.day, prefix=self.prefix)

    def summary_key(self, key: DayKey) -> str:
        """The S3 key of a household-day's summary."""
        return summary_key(key.household_id, key.day, prefix=self.prefix)

    def _get(self, key: str) -> dict[str, Any] | None:
        return get_object_or_none(self.s3, self.bucket, key)

    def read_day(self, key: DayKey) -> StoredDay | None:
        """The archived rows and merged stream position, or None if nothing is archived."""
        reply = self._get(self.day_key(key))
        if reply is None:
            return None
        rows = decode_day(reply["Body"].read())
        if rows.household_id != key.household_id:
            raise ValueError(
                f"{self.day_key(key)} holds household {rows.household_id!r}, not the key's"
            )
        meta = reply.get("Metadata", {})
        try:
            position: StreamPosition | None = StreamPosition(
                stream=meta["stream"],
                shard_id=meta["shard-id"],
                sequence=int(meta["sequence-number"]),
            )
        except (KeyError, ValueError):
            position = None  # written by another tool: merge everything, dedupe by content
        return StoredDay(rows=rows, merged_up_to=position)

    def write_day(self, key: DayKey, rows: ReadingBatch, *, merged_up_to: StreamPosition) -> str:
        """Replace the household-day's object with ``rows``; returns its key.

        Refuses rows of another household or day: a misplaced row would be invisible to
        every reader that prunes by partition.
        """
        days = split_by_day(rows)
        if rows.household_id != key.household_id or [day for day, _ in days] != [key.day]:
            raise ValueError(f"rows do not all belong to {key}")
        object_key = self.day_key(key)
        self.s3.put_object(
            Bucket=self.bucket,
            Key=object_key,
            Body=encode_day(rows),
            ContentType="application/vnd.apache.parquet",
            Metadata={
                "stream": merged_up_to.stream,
                "shard-id": merged_up_to.shard_id,
                "sequence-number": str(merged_up_to.sequence),
                "rows": str(len(rows)),
            },
        )
        return object_key

    def write_conflicts(
        self, key: DayKey, replaced: ReadingBatch, *, replaced_by: StreamPosition
    ) -> str:
        """Keep the readings a write replaced, under ``conflicts/`` (Parquet, like the day).

        The key holds the replacing write's stream position and a hash of the rows, so a
        retried write lands on the same object; the metadata says what replaced them.
        """
        body = encode_day(replaced)
        digest = hashlib.sha256(body).hexdigest()[:16]
        tag = f"{replaced_by.shard_id}-{replaced_by.sequence}-{digest}"
        object_key = conflicts_key(key.household_id, key.day, tag, prefix=self.prefix)
        self.s3.put_object(
            Bucket=self.bucket,
            Key=object_key,
            Body=body,
            ContentType="application/vnd.apache.parquet",
            Metadata={
                "replaced-by-stream": replaced_by.stream,
                "replaced-by-shard-id": replaced_by.shard_id,
                "replaced-by-sequence-number": str(replaced_by.sequence),
                "readings-key": self.day_key(key),
                "rows": str(len(replaced)),
            },
        )
        return object_key

    def write_summary(self, summary: DailySummary) -> bool:
        """Write the summary if it differs from the stored one; True when written."""
        key = self.summary_key(DayKey(summary.household_id, summary.date))
        body = summary.model_dump_json().encode()
        stored = self._get(key)
        if stored is not None and stored["Body"].read() == body:
            return False
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        return True
