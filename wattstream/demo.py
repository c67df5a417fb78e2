"""What ``wattstream run`` adds to the UCI replay so that the demo shows every feature.

* a small London fleet from the shipped slice (``data/london``), streamed through the
  same code path as ``wattstream simulate`` and on the same demo clock as the replay,
  so the realtime service serves energy-only meters with the fleet model;
* one clearly labelled demo anomaly in one London household (the detector's input);
* one batch upload: a day of the real UCI file, through the raw bucket and the batch
  handler, with the UCI clock declared;
* the feature summary of ``run --once``: counts read back from the stack's stores.
"""

from __future__ import annotations

import datetime as dt
import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = [
    "DEMO_ANOMALY_KW",
    "DEMO_LONDON_DAYS",
    "LONDON_PREFIX",
    "UPLOAD_HOUSEHOLD",
    "FeatureCounts",
    "HouseholdFeatures",
    "anomaly_label",
    "demo_anomaly",
    "feature_counts",
    "write_upload_slice",
]

LONDON_PREFIX: Final = "london"
"""Ids of the demo's London households: london-00001 ..."""

DEMO_LONDON_DAYS: Final = 7.0
"""A week of the fleet from the replay's start: the fleet model needs one complete day,
the anomaly lands on the 4th."""

DEMO_ANOMALY_KW: Final = 2.0
DEMO_ANOMALY_HOURS: Final = 4
DEMO_ANOMALY_DAY: Final = 3
DEMO_ANOMALY_HOUR: Final = 10
"""The anomaly lands on the fleet's 4th day, 10:00-14:00 UTC: the detector has 3 days of
usual, and a daytime excess stands out (the detector wants it to persist: at half-hour
bins, 3 h at +1.5 kW in an evening peak is not enough)."""

UPLOAD_HOUSEHOLD: Final = "upload-demo"
UPLOAD_DAY_ROWS: Final = 1440
"""The demo upload: the first day (1,440 minutes) of the shipped UCI slice."""


def demo_anomaly(first_household: str, start: dt.datetime) -> Any:
    """The demo's labelled anomaly: +2 kW for 4 h in ``first_household``."""
    from services.ingest.core.fleet import InjectedAnomaly
    from shared.batch import datetime_to_us

    day = dt.datetime.combine(
        start.date() + dt.timedelta(days=DEMO_ANOMALY_DAY),
        dt.time(DEMO_ANOMALY_HOUR),
        tzinfo=dt.UTC,
    )
    return InjectedAnomaly(
        household_id=first_household,
        start_us=datetime_to_us(day),
        end_us=datetime_to_us(day + dt.timedelta(hours=DEMO_ANOMALY_HOURS)),
        extra_kw=DEMO_ANOMALY_KW,
    )


def anomaly_label(anomaly: Any) -> str:
    """One line that says the anomaly is the demo's, not the data's."""
    from shared.batch import us_to_datetime

    start = us_to_datetime(anomaly.start_us)
    return (
        f"demo anomaly (injected, not in the real data): {anomaly.household_id} "
        f"+{anomaly.extra_kw:g} kW from {start:%Y-%m-%d %H:%M} UTC for "
        f"{(anomaly.end_us - anomaly.start_us) / 3.6e9:g} h"
    )


def write_upload_slice(source: Path, folder: Path) -> Path:
    """A small real UCI file: the header and the first day of ``source`` (for the upload)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{source.name.removesuffix('.gz').removesuffix('.txt')}_day1.txt"
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
        lines = [line for _, line in zip(range(UPLOAD_DAY_ROWS + 1), handle, strict=False)]
    target.write_text("".join(lines), encoding="utf-8")
    return target


@dataclass(frozen=True)
class HouseholdFeatures:
    """What the stack holds for one demo household."""

    household_id: str
    forecasts: int
    model_version: str | None
    fallback_reason: str | None
    anomalies: int
    scored_pairs: int


@dataclass(frozen=True)
class FeatureCounts:
    """Per household: forecasts (by the latest's model), anomalies and scored pairs."""

    households: tuple[HouseholdFeatures, ...]

    def of(self, prefix: str) -> list[HouseholdFeatures]:
        return [h for h in self.households if h.household_id.startswith(f"{prefix}-")]

    @staticmethod
    def naive(household: HouseholdFeatures) -> bool:
        from services.realtime.core.fallback import FALLBACK_VERSION

        return household.model_version in (None, FALLBACK_VERSION)


def feature_counts(store: Any, household_ids: Sequence[str], first_day: dt.date) -> FeatureCounts:
    """Read back each household's forecasts, anomalies and accuracy from the gateway store.

    Forecasts are counted by their stored "next" targets (one per issued forecast).
    """
    rows = []
    for household_id in household_ids:
        summary = store.household(household_id)
        last = summary.last_reading_at if summary is not None else None
        if last is None:
            rows.append(HouseholdFeatures(household_id, 0, None, None, 0, 0))
            continue
        days = [first_day + dt.timedelta(days=i) for i in range((last.date() - first_day).days + 2)]
        forecasts = sum(t.horizon == "next" for t in store.targets(household_id, days))
        latest = store.latest_forecast(household_id)
        begin = dt.datetime.combine(first_day, dt.time(), tzinfo=dt.UTC)
        marks = store.anomalies(household_id, begin, last + dt.timedelta(days=1))
        accuracy = store.accuracy(household_id)
        pairs = sum(h.pairs for h in accuracy.horizons.values()) if accuracy is not None else 0
        rows.append(
            HouseholdFeatures(
                household_id,
                forecasts,
                latest.model_version if latest is not None else None,
                latest.fallback_reason if latest is not None else None,
                len(marks),
                pairs,
            )
        )
    return FeatureCounts(tuple(rows))
