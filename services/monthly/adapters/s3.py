"""S3 adapters of the monthly service: the archive (read) and the models bucket (write).

Keys come from :mod:`services.monthly.core.debounce` (deterministic). The archive's
Parquet minute data is read with pyarrow directly (the schema is the ingest archive's:
``timestamp`` ``timestamp[us, UTC]``, ``household_id``, and the float64 measurement
columns of :data:`shared.schema.MEASUREMENT_FIELDS`); services never import each other.

A forecast's input fingerprint is kept in the object's user metadata
(``input-fingerprint``), not in the JSON, so the JSON is exactly the wire model and a
``HeadObject`` is enough to recognise a duplicate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import numpy as np
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from services.monthly.core.debounce import (
    checkpoint_key,
    hive_value,
    parse_summary_key,
    plot_key,
    result_key,
    summaries_cache_key,
    summary_key,
    summary_prefix,
)
from services.monthly.core.series import HourlySeries, hourly_mean_kw
from shared.schema import MonthlyForecast, Quarantined

__all__ = [
    "FINGERPRINT_METADATA",
    "S3ArchiveReader",
    "S3RejectSink",
    "S3ResultStore",
    "readings_key",
    "reject_key",
]

FINGERPRINT_METADATA: Final = "input-fingerprint"
_NOT_FOUND: Final = frozenset({"NoSuchKey", "404", "NotFound"})
_READ_COLUMNS: Final = ("timestamp", "global_active_power_kw", "energy_kwh", "interval_s")
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._=-]+")


def _missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in _NOT_FOUND


def readings_key(household_id: str, day: dt.date) -> str:
    """The archive's Parquet object of a household-day (the ingest archive's layout)."""
    return f"readings/household={hive_value(household_id)}/date={day.isoformat()}/data.parquet"


class S3ArchiveReader:
    """:class:`~services.monthly.core.ports.SummarySource` on the archive bucket.

    ``max_workers`` bounds the parallel GETs when many objects are needed at once (a
    cold household's whole history); S3 latency, not CPU, is what they wait for.
    """

    def __init__(self, bucket: str, *, s3: Any, max_workers: int = 16) -> None:
        self.bucket = bucket
        self.s3 = s3
        self.max_workers = max_workers

    def list_summaries(self, household_id: str) -> dict[dt.date, str]:
        found: dict[dt.date, str] = {}
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=summary_prefix(household_id)):
            for item in page.get("Contents", []):
                parsed = parse_summary_key(item["Key"])
                if parsed is not None and parsed[0] == household_id:
                    found[parsed[1]] = str(item["ETag"]).strip('"')
        return found

    def _get(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(self.s3.get_object(Bucket=self.bucket, Key=key))
        except ClientError as error:
            if _missing(error):
                return None
            raise

    def get_summary(self, household_id: str, day: dt.date) -> tuple[bytes, str] | None:
        reply = self._get(summary_key(household_id, day))
        if reply is None:
            return None
        return reply["Body"].read(), str(reply.get("ETag", "")).strip('"')

    def get_summaries(
        self, household_id: str, days: Sequence[dt.date]
    ) -> dict[dt.date, tuple[bytes, str] | None]:
        """Several summaries at once (threads); a missing one maps to None."""
        workers = max(1, min(self.max_workers, len(days)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            replies = list(pool.map(lambda d: self.get_summary(household_id, d), days))
        return dict(zip(days, replies, strict=True))

    def _day_columns(self, household_id: str, day: dt.date) -> dict[str, np.ndarray] | None:
        reply = self._get(readings_key(household_id, day))
        if reply is None:
            return None
        table = pq.read_table(io.BytesIO(reply["Body"].read()))
        present = [c for c in _READ_COLUMNS if c in table.column_names]
        columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in present}
        timestamps = table.column("timestamp").cast("int64").to_numpy()
        columns["timestamp"] = np.asarray(timestamps, dtype=np.int64)
        return columns

    def hourly(self, household_id: str, days: Sequence[dt.date]) -> HourlySeries | None:
        if not days:
            return None
        workers = max(1, min(self.max_workers, len(days)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = [p for p in pool.map(lambda d: self._day_columns(household_id, d), days) if p]
        if not parts:
            return None

        def joined(name: str) -> np.ndarray | None:
            if not all(name in p for p in parts):
                return None
            return np.concatenate([np.asarray(p[name], dtype=np.float64) for p in parts])

        timestamps = np.concatenate([p["timestamp"] for p in parts])
        series = hourly_mean_kw(
            timestamps,
            power_kw=joined("global_active_power_kw"),
            energy_kwh=joined("energy_kwh"),
            interval_s=joined("interval_s"),
        )
        return series if len(series) else None


class S3ResultStore:
    """:class:`~services.monthly.core.ports.ResultStore` on the models bucket."""

    def __init__(self, bucket: str, *, s3: Any) -> None:
        self.bucket = bucket
        self.s3 = s3

    def _get_bytes(self, key: str) -> bytes | None:
        try:
            return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except ClientError as error:
            if _missing(error):
                return None
            raise

    def stored_fingerprint(self, household_id: str, as_of: dt.date) -> str | None:
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=result_key(household_id, as_of))
        except ClientError as error:
            if _missing(error):
                return None
            raise
        value = head.get("Metadata", {}).get(FINGERPRINT_METADATA)
        return str(value) if value else None

    def put_forecast(self, forecast: MonthlyForecast, fingerprint: str) -> str:
        key = result_key(forecast.household_id, forecast.as_of)
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=forecast.model_dump_json().encode(),
            ContentType="application/json",
            Metadata={FINGERPRINT_METADATA: fingerprint},
        )
        return key

    def put_plot(self, household_id: str, as_of: dt.date, png: bytes) -> str:
        key = plot_key(household_id, as_of)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=png, ContentType="image/png")
        return key

    def get_checkpoint(self, household_id: str) -> str | None:
        data = self._get_bytes(checkpoint_key(household_id))
        return None if data is None else data.decode()

    def put_checkpoint(self, household_id: str, model_json: str) -> str:
        key = checkpoint_key(household_id)
        self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=model_json.encode(), ContentType="application/json"
        )
        return key

    def get_cache(self, household_id: str) -> bytes | None:
        return self._get_bytes(summaries_cache_key(household_id))

    def put_cache(self, household_id: str, data: bytes) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=summaries_cache_key(household_id),
            Body=data,
            ContentType="application/json",
        )


def reject_key(item: Quarantined, prefix: str = "quarantine/monthly/") -> str:
    """``prefix + code/sha256.json``: the same refused input always lands on the same key."""
    digest = hashlib.sha256()
    for part in (item.source.encode(), item.reason.encode(), item.original):
        digest.update(len(part).to_bytes(8, "big") + part)
    code = _UNSAFE.sub("_", item.reason.split(":", 1)[0]).strip("_")[:64] or "unknown"
    return f"{prefix}{code}/{digest.hexdigest()}.json"


class S3RejectSink:
    """:class:`~services.monthly.core.ports.RejectSink` as JSON objects in the models bucket.

    The monthly function may write only there (the template gives it no quarantine queue),
    and a deterministic key makes a redelivered bad event overwrite its own record.
    """

    def __init__(self, bucket: str, *, s3: Any) -> None:
        self.bucket = bucket
        self.s3 = s3

    def reject(self, items: Sequence[Quarantined]) -> None:
        for item in items:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=reject_key(item),
                Body=item.model_dump_json().encode(),
                ContentType="application/json",
            )
