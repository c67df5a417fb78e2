"""The input contract: whatever ``validate_reading`` accepts, every consumer digests.

Issue 13: one accepted reading (energy 1e306 over 1e308 s, a year-0001 timestamp) used to
crash the archive's daily summary, the realtime window or the monthly forecast on every
retry. Here hypothesis throws readings at the edge of every limit (and far beyond), and
each accepted one goes through what ingest publishes (the codec) and then through every
consumer's pure core: the archive (merge, Parquet, :class:`DailySummary`), the monthly
fallback (:class:`MonthlyForecast`), the realtime step (:class:`Forecast`) and the
gateway's per-minute consumption. None of them may raise or produce a model that fails
its own validation.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from services.gateway.core.consumption import day_energy_kwh, merge_minutes, minute_updates
from services.ingest.core.archive import merge_day, split_by_day, summarize_day
from services.monthly.core.forecast import fallback_forecast
from services.monthly.core.series import DailySeries
from services.realtime.core.stream import Delivery, StreamConfig, step
from shared.archive_parquet import decode_day, encode_day
from shared.batch import MAX_TIMESTAMP_US, ReadingBatch
from shared.codec import decode_record, encode_batch
from shared.schema import DailySummary, Forecast, MeterReading, MonthlyForecast
from shared.validation import DEFAULT_LIMITS, sanity_mask, validate_reading
from tests.services.realtime.fakes import PersistenceModel, tiny_spec

NOW = dt.datetime(2026, 1, 15, 12, tzinfo=dt.UTC)
SPEC = tiny_spec()
CONFIG = StreamConfig(SPEC)

_EDGES = [0.0, -0.0, 5e-324, 1e-300, 1.0, 99.999, 100.0, 100.0001, 500.0, 1e6, 1e300, 1e308]


def _values(low: float, high: float) -> st.SearchStrategy[float | None]:
    """Plausible values most of the time, edges and absurd values often."""
    return st.one_of(
        st.none(),
        st.floats(low, high, allow_nan=False),
        st.sampled_from(_EDGES),
        st.floats(allow_nan=False, allow_infinity=False),
    )


_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "global_active_power_kw": _values(0, 100),
    "global_reactive_power_kw": _values(0, 100),
    "voltage_v": _values(80, 300),
    "global_intensity_a": _values(0, 500),
    "sub_metering_1_wh": _values(0, 100),
    "sub_metering_2_wh": _values(0, 100),
    "sub_metering_3_wh": _values(0, 100),
    "energy_kwh": _values(0, 50),
    "interval_s": st.one_of(
        st.none(),
        st.sampled_from([1.0, 60.0, 900.0, 1800.0, 3600.0, 86_400.0, 0.999, 86_400.001, 1e308]),
        st.floats(1, 86_400),
    ),
}

_timestamps = st.one_of(
    st.datetimes(
        min_value=dt.datetime(1989, 12, 31),
        max_value=dt.datetime(2026, 1, 15, 12, 10),
        timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-9.5))]),
    ).map(lambda t: t.isoformat()),
    st.integers(-1, 1_800_000_000),  # JSON numbers: Unix seconds
    st.sampled_from(["0001-01-01T00:00:00Z", "1900-01-01T00:00:00Z", 1796643060000, 1e308]),
)


@st.composite
def raw_readings(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON-like reading; a third of them close to a London meter (energy only)."""
    item: dict[str, Any] = {
        "household_id": draw(st.sampled_from(["h1", "h2"])),
        "timestamp": draw(_timestamps),
    }
    for name, strategy in _FIELDS.items():
        value = draw(strategy)
        if value is not None:
            item[name] = value
    if draw(st.booleans()):
        item.pop("global_active_power_kw", None)
    return item


def _consume(batch: ReadingBatch) -> None:
    """Every consumer's core on one household's accepted readings; raises on a failure."""
    # what ingest publishes, and what every stream consumer decodes
    decoded = ReadingBatch.concat([decode_record(data) for data in encode_batch(batch)])
    # consumers re-check without the clock: the shared rules pass what ingest passed
    _, rejected = sanity_mask(decoded, now_us=MAX_TIMESTAMP_US)
    assert rejected == []

    # archive: merge, Parquet, daily summary
    summaries = []
    for index, (day, rows) in enumerate(split_by_day(decoded)):
        merged = merge_day(None, [rows]).rows
        if index == 0:  # Parquet is the slow part: one day per household is enough
            decode_day(encode_day(merged))
        summary = summarize_day(merged, day)
        assert math.isfinite(summary.kwh)
        assert math.isfinite(summary.peak_kw)
        summaries.append(DailySummary.model_validate_json(summary.model_dump_json()))

    # monthly: the fallback forecast of the latest day's month
    series = DailySeries.from_summaries(summaries)
    result = fallback_forecast(series, max(s.date for s in summaries), "property test")
    MonthlyForecast.model_validate_json(result.forecast.model_dump_json())

    # realtime: the streaming step, model and fallback paths
    step_result = step({}, [Delivery(decoded, 1)], PersistenceModel(SPEC), CONFIG)
    for forecast in step_result.to_forecasts():
        Forecast.model_validate_json(forecast.model_dump_json())

    # gateway: per-minute consumption served by the API
    for update in minute_updates(decoded).values():
        minutes, _ = merge_minutes(None, update)
        assert math.isfinite(day_energy_kwh(minutes))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(st.lists(raw_readings(), min_size=1, max_size=12))
def test_validate_accepted_readings_are_digested_by_every_consumer(items: list[dict]) -> None:
    accepted = [
        r for r in (validate_reading(i, now=NOW) for i in items) if isinstance(r, MeterReading)
    ]
    assume(accepted)
    for household in sorted({r.household_id for r in accepted}):
        readings = [r for r in accepted if r.household_id == household]
        _consume(ReadingBatch.from_readings(readings))


def test_validate_accepts_readings_at_every_limit_and_consumers_digest_them() -> None:
    """The extremes the limits allow, deterministic: a regression guard for the property."""
    limits = DEFAULT_LIMITS
    floor = limits.min_timestamp
    extremes = [
        {"global_active_power_kw": limits.max_active_power_kw, "interval_s": 86_400.0},
        {"energy_kwh": limits.max_active_power_kw * 24, "interval_s": limits.max_interval_s},
        {"energy_kwh": 5e-324, "interval_s": limits.min_interval_s},
        {
            "global_active_power_kw": 5e-324,
            "global_reactive_power_kw": limits.max_reactive_power_kw,
            "global_intensity_a": limits.max_intensity_a,
            "voltage_v": limits.max_voltage_v,
        },
    ]
    stamps = [floor, floor + dt.timedelta(minutes=1), NOW, NOW + dt.timedelta(days=-400)]
    readings = []
    for stamp, fields in zip(stamps, extremes, strict=True):
        reading = validate_reading(
            {"household_id": "h1", "timestamp": stamp.isoformat(), **fields}, now=NOW
        )
        assert isinstance(reading, MeterReading), reading
        readings.append(reading)
    _consume(ReadingBatch.from_readings(readings))
    assert np.isfinite(ReadingBatch.from_readings(readings).timestamps_us).all()
