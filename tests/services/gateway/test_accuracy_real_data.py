"""Live accuracy on real London half-hours, through both consumers (slow, full data).

Two forecasters with known answers are streamed as forecasts next to the real readings:
seasonal naive itself (its live MASE must be exactly 1 on both horizons: the check that
the live join pairs each forecast with the right actual and the right naive value), and
the median of the same half-hour over the last 7 days, whose live metrics must equal the
same metrics computed offline with pandas.
"""

from __future__ import annotations

import datetime as dt
import gzip

import numpy as np
import pandas as pd
import pytest
from aws_lambda_powertools import Logger, Metrics

from services.gateway.core.accuracy import fleet_accuracy
from services.gateway.shells.consumer import ConsumerDeps
from services.gateway.shells.forecasts_lambda import apply_forecasts
from services.gateway.shells.readings_lambda import apply_readings
from shared.batch import ReadingBatch, datetime_to_us
from shared.publishing import stream_records
from shared.schema import Forecast, ForecastPoint
from shared.shell import deliveries
from testing.reliability.gateway_fakes import MemoryStore
from tests.conftest import DATA_DIR
from tests.lambda_events import kinesis_fixture_event
from tests.services.ingest.fakes import MemoryQuarantine

LONDON = DATA_DIR / "lcl_halfhourly_2013_100households.csv.gz"
HOUSEHOLDS = 5
START = pd.Timestamp("2013-11-01", tz="UTC")
DAYS = 21
SLOT_US = 1800 * 1_000_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not LONDON.exists(), reason=f"London half-hours not found at {LONDON}"),
]


def _load() -> dict[str, pd.Series]:
    """kWh per half-hour of the first households with complete data, Oct 24 - Nov 21."""
    with gzip.open(LONDON, "rt") as text:
        frame = pd.read_csv(text, names=["id", "t", "kwh"], header=0)
    frame["t"] = pd.to_datetime(frame["t"], utc=True)
    frame["kwh"] = pd.to_numeric(frame["kwh"], errors="coerce")
    grid = pd.date_range(START - pd.Timedelta(days=8), periods=(DAYS + 8) * 48, freq="30min")
    series = {}
    for household, rows in frame.groupby("id", sort=True):
        values = rows.drop_duplicates("t").set_index("t")["kwh"].reindex(grid)
        if values.notna().all():
            series[str(household)] = values
        if len(series) == HOUSEHOLDS:
            break
    return series


def _forecast(household: str, kwh: pd.Series, slot: int, rule: str) -> Forecast:
    """A 48-step forecast issued at ``slot`` from what was known before it."""
    issued = kwh.index[slot]
    history = kwh.to_numpy()[:slot]
    points = []
    for k in range(48):
        same_slot = history[slot + k - 48 :: -48][:7]  # the same half-hour, latest first
        kw = 2 * (same_slot[0] if rule == "naive" else float(np.median(same_slot)))
        lo, hi = 2 * np.quantile(same_slot, [0.1, 0.9])
        points.append(
            ForecastPoint(
                timestamp=issued + dt.timedelta(minutes=30 * k),
                value_kw=kw,
                lower_kw=min(lo, kw),
                upper_kw=max(hi, kw),
            )
        )
    return Forecast(
        household_id=household,
        issued_at=issued,
        resolution_s=1800,
        points=points,
        model_version=rule,
        anomaly_score=0.0,
        anomaly=False,
    )


def _stream(series: dict[str, pd.Series], rule: str) -> MemoryStore:
    """Day by day: the day's readings and the day's forecasts, each as one batch."""
    store = MemoryStore()
    deps = ConsumerDeps(
        store=store,
        quarantine=MemoryQuarantine(),
        logger=Logger(service="gateway-test"),
        metrics=Metrics(namespace="wattstream-test", service="gateway-test"),
    )
    first = 8 * 48
    for day in range(-8, DAYS):
        readings, forecasts = [], []
        for household, kwh in series.items():
            lo = first + day * 48
            stamps = np.array([datetime_to_us(t) for t in kwh.index[lo : lo + 48]])
            batch = ReadingBatch(
                household,
                stamps,
                {"energy_kwh": kwh.to_numpy()[lo : lo + 48], "interval_s": np.full(48, 1800.0)},
            )
            readings += [(household, r.data) for r in stream_records([batch])]
            if day >= 0:
                forecasts += [
                    (household, _forecast(household, kwh, s, rule).model_dump_json().encode())
                    for s in range(lo, lo + 48)
                ]
        for payloads, apply in ((forecasts, apply_forecasts), (readings, apply_readings)):
            if payloads:
                event = kinesis_fixture_event(payloads, role="gateway")
                assert not apply(deliveries(event, kinesis=True), deps).failed
    return store


@pytest.fixture(scope="module")
def london() -> dict[str, pd.Series]:
    series = _load()
    assert len(series) == HOUSEHOLDS
    return series


def test_live_accuracy_of_seasonal_naive_is_exactly_one(london):
    fleet = fleet_accuracy(_stream(london, "naive").fleet_accuracy())

    assert fleet.households == HOUSEHOLDS
    for horizon in ("next", "day_ahead"):
        pooled = fleet.horizons[horizon].pooled
        assert pooled.pairs == HOUSEHOLDS * 7 * 48  # every half-hour of the 7-day window
        assert pooled.mase == pytest.approx(1.0, abs=1e-12)
        assert fleet.horizons[horizon].share_beating_naive == 0.0


def test_live_accuracy_of_seven_day_median_matches_an_offline_evaluation(london):
    """The live numbers equal the same metrics computed offline with pandas on the last
    7 days of the stream: the join is right on real data, not only on toy series."""
    fleet = fleet_accuracy(_stream(london, "median7").fleet_accuracy())

    window = slice(8 * 48 + (DAYS - 7) * 48, 8 * 48 + DAYS * 48)
    errors, naive_errors, inside, household_mase = [], [], [], []
    for kwh in london.values():
        kw = 2 * kwh.to_numpy()
        same_slot = np.stack(
            [kw[window.start - 48 * d : window.stop - 48 * d] for d in range(1, 8)]
        )
        median = np.median(same_slot, axis=0)
        lo, hi = np.quantile(same_slot, [0.1, 0.9], axis=0)
        actual = kw[window]
        errors.append(np.abs(median - actual))
        naive_errors.append(np.abs(same_slot[0] - actual))
        inside.append((np.minimum(lo, median) <= actual) & (actual <= np.maximum(hi, median)))
        household_mase.append(errors[-1].mean() / naive_errors[-1].mean())
    live = fleet.horizons["next"]
    print(
        {
            "households": fleet.households,
            "intervals": live.pooled.pairs,
            "mae_kw": live.pooled.mae_kw,
            "mae_seasonal_naive_kw": live.pooled.mae_seasonal_naive_kw,
            "pooled_mase": live.pooled.mase,
            "mean_household_mase": live.mean_household_mase,
            "median_household_mase": live.median_household_mase,
            "coverage": live.pooled.coverage,
        }
    )

    assert live.pooled.pairs == HOUSEHOLDS * 7 * 48
    assert live.pooled.mae_kw == pytest.approx(np.concatenate(errors).mean(), rel=1e-9)
    assert live.pooled.mae_seasonal_naive_kw == pytest.approx(
        np.concatenate(naive_errors).mean(), rel=1e-9
    )
    assert live.pooled.coverage == pytest.approx(np.concatenate(inside).mean())
    assert live.mean_household_mase == pytest.approx(np.mean(household_mase), rel=1e-9)
