"""The demo's shipped history: idempotent seeding, and enough of it for Prophet."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest
from aws_lambda_powertools import Logger, Metrics

from services.ingest.core.archive import summarize_day
from services.monthly.core.forecast import FALLBACK_VERSION
from services.monthly.shells.lambda_handler import MonthlyDeps, forecast_household
from shared.archive_layout import summary_key
from shared.batch import ReadingBatch
from shared.schema import DailySummary
from shared.uci import iter_uci
from tests.conftest import APRIL_2007
from tests.services.monthly.fakes import MemoryArchive, MemoryRejects, MemoryResults
from wattstream.demo_history import (
    HISTORY_FILE,
    history_summaries,
    load_history,
    seed_archive,
)

FIRST_DAY = dt.date(2026, 12, 7)  # the replay's first day
_buckets = itertools.count()


@pytest.fixture
def bucket(clients) -> str:
    name = f"seed-{next(_buckets)}"
    clients("s3").create_bucket(Bucket=name)
    return name


def test_history_is_the_real_house_before_the_slice_small_and_complete():
    history = load_history()

    assert HISTORY_FILE.stat().st_size < 10_000
    assert history[0].date == dt.date(2006, 12, 16)
    assert history[-1].date == dt.date(2007, 3, 30)
    assert len(history) == 105
    assert sum(d.coverage >= 0.99 for d in history) >= 90
    assert all(5 < d.kwh < 100 for d in history if d.coverage >= 0.99)


def test_history_summaries_end_the_day_before_the_replay_and_scale():
    history = load_history()

    summaries = history_summaries("uci-0002", history, last_day=FIRST_DAY - dt.timedelta(1))
    scaled = history_summaries("uci-0002", history, last_day=FIRST_DAY, scale=0.5)

    assert summaries[-1].date == FIRST_DAY - dt.timedelta(days=1)
    assert [s.date for s in summaries] == sorted({s.date for s in summaries})
    assert summaries[-1].kwh == pytest.approx(history[-1].kwh)
    assert scaled[-1].kwh == pytest.approx(history[-1].kwh / 2, rel=1e-6)
    assert all(s.first_timestamp.date() == s.date for s in summaries)


def test_seed_archive_is_idempotent_and_never_overwrites(clients, bucket):
    s3 = clients("s3")
    summaries = history_summaries("uci-0001", load_history(), last_day=FIRST_DAY)
    real = summaries[-1].model_copy(update={"kwh": 99.0})  # written by the archive first
    key = summary_key("uci-0001", real.date)
    s3.put_object(Bucket=bucket, Key=key, Body=real.model_dump_json())

    first = seed_archive(s3, bucket, summaries)
    keys = s3.list_objects_v2(Bucket=bucket)["Contents"]
    second = seed_archive(s3, bucket, summaries)

    assert (first.written, first.kept) == (len(summaries) - 1, 1)
    assert (second.written, second.kept) == (0, len(summaries))
    assert s3.list_objects_v2(Bucket=bucket)["Contents"] == keys  # nothing rewritten
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert DailySummary.model_validate_json(body).kwh == 99.0


def _forecast(archive: MemoryArchive, household: str) -> object:
    deps = MonthlyDeps(
        source=archive,
        results=MemoryResults(),
        rejects=MemoryRejects(),
        logger=Logger(service="demo-test"),
        metrics=Metrics(namespace="demo-test"),
    )
    forecast_household(deps, household)
    (forecast,) = deps.results.forecasts().values()  # type: ignore[attr-defined]
    return forecast


def _april_slice_summaries(household: str, first_day: dt.date) -> list[DailySummary]:
    """The shipped April slice as the archive summarises it, replayed from ``first_day``."""
    rows = [c.readings for c in iter_uci(APRIL_2007, household_id=household)]
    batch = ReadingBatch.concat(rows)
    shift_us = (first_day - dt.date(2007, 3, 31)).days * 86_400_000_000
    batch = ReadingBatch(household, batch.timestamps_us + shift_us, dict(batch.columns))
    days = batch.timestamps_us // 86_400_000_000
    return [
        summarize_day(
            batch.take(np.flatnonzero(days == d)), dt.date(1970, 1, 1) + dt.timedelta(int(d))
        )
        for d in np.unique(days)
    ]


def test_demo_path_gives_prophet_forecasts_and_the_slice_alone_the_fallback():
    household = "uci-0001"
    april = _april_slice_summaries(household, FIRST_DAY)
    alone, seeded = MemoryArchive(), MemoryArchive()
    for item in april:
        alone.put(item)
        seeded.put(item)
    for item in history_summaries(household, load_history(), last_day=FIRST_DAY - dt.timedelta(1)):
        seeded.put(item)

    without = _forecast(alone, household)
    with_history = _forecast(seeded, household)

    assert without["fallback_reason"]  # type: ignore[index]  # what make run showed before
    assert with_history["fallback_reason"] is None  # type: ignore[index]
    assert with_history["model_version"] != FALLBACK_VERSION  # type: ignore[index]
    assert with_history["as_of"] == without["as_of"]  # type: ignore[index]
