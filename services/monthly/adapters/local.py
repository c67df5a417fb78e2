"""A :class:`~services.monthly.core.ports.ResultStore` on a local folder (the fleet command).

Same keys as the models bucket, as relative paths, so a fleet run's output can be synced
to S3 as it is (``aws s3 sync out/ s3://models-bucket/``) and the service then warm-starts
from the fleet's checkpoints. Files are written atomically (temp file + rename): a killed
run never leaves a half-written forecast.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from types import EllipsisType

from services.monthly.core.debounce import (
    checkpoint_key,
    month_prefix,
    result_key,
    summaries_cache_key,
)
from services.monthly.core.ports import ForecastConflict
from shared.monthly_results import MonthlyComponents, accuracy_key, components_key
from shared.schema import MonthlyForecast

__all__ = ["LocalResultStore"]

_FINGERPRINT_SUFFIX = ".fingerprint"


class LocalResultStore:
    """Results under ``root`` with the S3 layout; the fingerprint sits in a sidecar file."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _write(self, key: str, data: bytes) -> str:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def _read(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def stored_fingerprint(self, household_id: str, as_of: dt.date) -> str | None:
        data = self._read(result_key(household_id, as_of) + _FINGERPRINT_SUFFIX)
        return None if data is None else data.decode()

    def put_forecast(
        self,
        forecast: MonthlyForecast,
        fingerprint: str,
        expected: str | EllipsisType | None = ...,
    ) -> str:
        """``expected`` is checked, not atomically: a folder has one writer (the fleet run)."""
        key = result_key(forecast.household_id, forecast.as_of)
        if (
            expected is not ...
            and self.stored_fingerprint(forecast.household_id, forecast.as_of) != expected
        ):
            raise ForecastConflict(f"{key}: stored fingerprint is no longer {expected}")
        self._write(key + _FINGERPRINT_SUFFIX, fingerprint.encode())
        return self._write(key, forecast.model_dump_json().encode())

    def put_components(self, components: MonthlyComponents) -> str:
        key = components_key(components.household_id, components.as_of)
        return self._write(key, components.model_dump_json().encode())

    def month_forecasts(self, household_id: str, month: str) -> list[MonthlyForecast]:
        folder = self.root / month_prefix(household_id, month)
        paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
        return [MonthlyForecast.model_validate_json(p.read_bytes()) for p in paths]

    def get_accuracy(self, household_id: str) -> bytes | None:
        return self._read(accuracy_key(household_id))

    def put_accuracy(self, household_id: str, data: bytes) -> str:
        return self._write(accuracy_key(household_id), data)

    def get_checkpoint(self, household_id: str) -> str | None:
        data = self._read(checkpoint_key(household_id))
        return None if data is None else data.decode()

    def put_checkpoint(self, household_id: str, model_json: str) -> str:
        return self._write(checkpoint_key(household_id), model_json.encode())

    def get_cache(self, household_id: str) -> bytes | None:
        return self._read(summaries_cache_key(household_id))

    def put_cache(self, household_id: str, data: bytes) -> None:
        self._write(summaries_cache_key(household_id), data)
