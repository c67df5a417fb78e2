"""S3 adapters of the monthly service: the archive (read) and the models bucket (write).

Keys of the models bucket come from :mod:`services.monthly.core.debounce`
(deterministic); the archive's keys and its Parquet format are the contract the ingest
archive writes (:mod:`shared.archive_layout`, :mod:`shared.archive_parquet`), since
services never import each other.

A forecast's input fingerprint is kept in the object's user metadata
(``input-fingerprint``), not in the JSON, so the JSON is exactly the wire model and a
``HeadObject`` is enough to recognise a duplicate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import EllipsisType
from typing import Any, Final

import numpy as np
from botocore.exceptions import ClientError

from services.monthly.core.debounce import (
    checkpoint_key,
    month_prefix,
    result_key,
    summaries_cache_key,
)
from services.monthly.core.ports import ForecastConflict
from services.monthly.core.series import HourlySeries, hourly_mean_kw
from shared.archive_layout import parse_summary_key, readings_key, summary_key, summary_prefix
from shared.archive_parquet import decode_day
from shared.batch import ReadingBatch
from shared.monthly_results import MonthlyComponents, accuracy_key, components_key
from shared.s3 import get_object_or_none, is_missing
from shared.schema import MonthlyForecast, Quarantined

__all__ = [
    "FINGERPRINT_METADATA",
    "S3ArchiveReader",
    "S3RejectSink",
    "S3ResultStore",
    "reject_key",
]

FINGERPRINT_METADATA: Final = "input-fingerprint"
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._=-]+")


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
        return get_object_or_none(self.s3, self.bucket, key)

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

    def _day(self, household_id: str, day: dt.date) -> ReadingBatch | None:
        reply = self._get(readings_key(household_id, day))
        if reply is None:
            return None
        return decode_day(reply["Body"].read())

    def hourly(self, household_id: str, days: Sequence[dt.date]) -> HourlySeries | None:
        if not days:
            return None
        workers = max(1, min(self.max_workers, len(days)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = [p for p in pool.map(lambda d: self._day(household_id, d), days) if p]
        if not parts:
            return None

        def joined(name: str) -> np.ndarray:
            return np.concatenate([p.columns[name] for p in parts])

        series = hourly_mean_kw(
            np.concatenate([p.timestamps_us for p in parts]),
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
        reply = get_object_or_none(self.s3, self.bucket, key)
        return None if reply is None else bytes(reply["Body"].read())

    def _head_result(self, key: str) -> tuple[str, str | None] | None:
        """(ETag, fingerprint) of a stored forecast, None when there is none."""
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if is_missing(error):
                return None
            raise
        value = head.get("Metadata", {}).get(FINGERPRINT_METADATA)
        return str(head["ETag"]), (str(value) if value else None)

    def stored_fingerprint(self, household_id: str, as_of: dt.date) -> str | None:
        stored = self._head_result(result_key(household_id, as_of))
        return None if stored is None else stored[1]

    def put_forecast(
        self,
        forecast: MonthlyForecast,
        fingerprint: str,
        expected: str | EllipsisType | None = ...,
    ) -> str:
        """A conditional write (``expected``) is S3's: ``If-None-Match: *`` when no
        forecast may exist yet, else ``If-Match`` on the ETag of the object whose
        fingerprint was checked, so nothing written in between is overwritten."""
        key = result_key(forecast.household_id, forecast.as_of)
        condition: dict[str, str] = {}
        if expected is None:
            condition = {"IfNoneMatch": "*"}
        elif expected is not ...:
            stored = self._head_result(key)
            if stored is None or stored[1] != expected:
                raise ForecastConflict(f"{key}: stored fingerprint is no longer {expected}")
            condition = {"IfMatch": stored[0]}
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=forecast.model_dump_json().encode(),
                ContentType="application/json",
                Metadata={FINGERPRINT_METADATA: fingerprint},
                **condition,
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if condition and code in {"PreconditionFailed", "ConditionalRequestConflict", "412"}:
                raise ForecastConflict(f"{key}: written by another call meanwhile") from error
            raise
        return key

    def put_components(self, components: MonthlyComponents) -> str:
        key = components_key(components.household_id, components.as_of)
        self._put_json(key, components.model_dump_json().encode())
        return key

    def month_forecasts(self, household_id: str, month: str) -> list[MonthlyForecast]:
        """List the month's forecast keys, then read them (in parallel, a month is <= 31)."""
        keys = [
            item["Key"]
            for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=month_prefix(household_id, month)
            )
            for item in page.get("Contents", [])
            if item["Key"].endswith(".json")
        ]
        if not keys:
            return []
        with ThreadPoolExecutor(max_workers=min(16, len(keys))) as pool:
            bodies = list(pool.map(self._get_bytes, keys))
        return [MonthlyForecast.model_validate_json(b) for b in bodies if b is not None]

    def get_accuracy(self, household_id: str) -> bytes | None:
        return self._get_bytes(accuracy_key(household_id))

    def put_accuracy(self, household_id: str, data: bytes) -> str:
        key = accuracy_key(household_id)
        self._put_json(key, data)
        return key

    def _put_json(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json")

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
