"""The pydantic wire contract."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pydantic import ValidationError

from shared.schema import (
    MEASUREMENT_FIELDS,
    DailyPoint,
    Forecast,
    ForecastPoint,
    MeterReading,
    MonthlyForecast,
    Quarantined,
    StreamCoordinates,
)

T0 = dt.datetime(2007, 4, 1, tzinfo=dt.UTC)


def reading(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "household_id": "uci-sceaux",
        "timestamp": "2007-04-01T00:00:00Z",
        "global_active_power_kw": 3.48,
    }
    base.update(changes)
    return base


def error_types(exc: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return [e["type"] for e in exc.value.errors()]


@pytest.mark.parametrize(
    "household_id",
    ["MAC000002", "uci-sceaux", "a", "A.b:c_d-e", "x" * 64],
)
def test_household_id_accepts_real_ids(household_id: str) -> None:
    assert MeterReading.model_validate(reading(household_id=household_id)).household_id == (
        household_id
    )


@pytest.mark.parametrize(
    "household_id", ["", "x" * 65, "-abc", "_abc", "a b", "abc\n", "café", "a/b", 7]
)
def test_household_id_rejects_unsafe_ids(household_id: object) -> None:
    with pytest.raises(ValidationError):
        MeterReading.model_validate(reading(household_id=household_id))


def test_meter_reading_normalises_timestamp_to_utc() -> None:
    r = MeterReading.model_validate(reading(timestamp="2007-04-01T00:00:00+01:00"))
    assert r.timestamp == dt.datetime(2007, 3, 31, 23, tzinfo=dt.UTC)
    assert r.timestamp.tzinfo is dt.UTC
    assert json.loads(r.model_dump_json())["timestamp"] == "2007-03-31T23:00:00Z"


@pytest.mark.parametrize("naive", ["2007-04-01T00:00:00", dt.datetime(2007, 4, 1)])
def test_meter_reading_rejects_naive_timestamp_clearly(naive: object) -> None:
    with pytest.raises(ValidationError) as exc:
        MeterReading.model_validate(reading(timestamp=naive))
    assert error_types(exc) == ["naive_timestamp"]
    assert "has no timezone" in str(exc.value)


@pytest.mark.parametrize("text", ["+0.0", "0", "1175385600", " 1175385600", "1e9", True])
def test_meter_reading_rejects_numeric_text_as_timestamp(text: object) -> None:
    """Found by the reliability suite: ``"+0.0"`` was accepted as 1970-01-01T00:00:00Z."""
    with pytest.raises(ValidationError) as exc:
        MeterReading.model_validate(reading(timestamp=text))
    assert error_types(exc) == ["datetime_not_iso"]
    assert "ISO 8601" in str(exc.value)


def test_meter_reading_reads_a_json_number_as_unix_seconds() -> None:
    r = MeterReading.model_validate_json(json.dumps(reading(timestamp=1175385600)))
    assert r.timestamp == dt.datetime(2007, 4, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_meter_reading_rejects_non_finite_floats(bad: float) -> None:
    with pytest.raises(ValidationError) as exc:
        MeterReading.model_validate(reading(voltage_v=bad))
    assert error_types(exc) == ["finite_number"]


@pytest.mark.parametrize("bad", ["3.48", True, [1.0]])
def test_meter_reading_rejects_numbers_of_the_wrong_type(bad: object) -> None:
    with pytest.raises(ValidationError):
        MeterReading.model_validate(reading(global_active_power_kw=bad))


def test_meter_reading_accepts_integers_as_floats() -> None:
    assert (
        MeterReading.model_validate(reading(global_active_power_kw=3)).global_active_power_kw == 3
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"global_active_power_kw": None},
        {"global_active_power_kw": None, "energy_kwh": 0.2},
        {"global_active_power_kw": None, "interval_s": 1800.0},
    ],
)
def test_meter_reading_requires_power_or_energy_with_interval(changes: dict) -> None:
    with pytest.raises(ValidationError) as exc:
        MeterReading.model_validate(reading(**changes))
    assert error_types(exc) == ["missing_measurement"]


def test_meter_reading_accepts_energy_over_interval_alone() -> None:
    r = MeterReading.model_validate(
        reading(global_active_power_kw=None, energy_kwh=0.219, interval_s=1800)
    )
    assert (r.energy_kwh, r.interval_s, r.global_active_power_kw) == (0.219, 1800.0, None)


def test_meter_reading_forbids_unknown_fields_and_mutation() -> None:
    with pytest.raises(ValidationError) as exc:
        MeterReading.model_validate(reading(power=1.0))
    assert error_types(exc) == ["extra_forbidden"]
    r = MeterReading.model_validate(reading())
    with pytest.raises(ValidationError):
        r.voltage_v = 230.0  # type: ignore[misc]


def test_meter_reading_rejects_other_schema_versions() -> None:
    assert MeterReading.model_validate(reading()).schema_version == 1
    with pytest.raises(ValidationError):
        MeterReading.model_validate(reading(schema_version=2))


def test_measurement_fields_are_exactly_the_numeric_fields_in_order() -> None:
    identity = {"schema_version", "household_id", "timestamp"}
    numeric = tuple(name for name in MeterReading.model_fields if name not in identity)
    assert numeric == MEASUREMENT_FIELDS
    assert len(MEASUREMENT_FIELDS) == 9


def test_meter_reading_json_round_trip() -> None:
    r = MeterReading.model_validate(reading(voltage_v=239.53, sub_metering_3_wh=18.0))
    assert MeterReading.model_validate_json(r.model_dump_json()) == r
    assert MeterReading.model_validate(r.model_dump(mode="json")) == r


def test_forecast_point_requires_value_inside_interval() -> None:
    ForecastPoint(timestamp=T0, value_kw=1.0, lower_kw=1.0, upper_kw=1.0)
    with pytest.raises(ValidationError, match=r"lower_kw=1\.5 is above value_kw=1\.0"):
        ForecastPoint(timestamp=T0, value_kw=1.0, lower_kw=1.5, upper_kw=2.0)
    with pytest.raises(ValidationError, match=r"value_kw=3\.0 is above upper_kw=2\.0"):
        ForecastPoint(timestamp=T0, value_kw=3.0, lower_kw=1.5, upper_kw=2.0)


def forecast(points: list[ForecastPoint]) -> Forecast:
    return Forecast(
        household_id="MAC000002",
        issued_at=T0,
        resolution_s=60,
        points=points,
        model_version="lstm-1",
        anomaly_score=0.3,
        anomaly=False,
    )


def point(minute: int) -> ForecastPoint:
    return ForecastPoint(
        timestamp=T0 + dt.timedelta(minutes=minute), value_kw=1.0, lower_kw=0.5, upper_kw=2.0
    )


def test_forecast_round_trips_and_checks_points() -> None:
    f = forecast([point(1), point(2)])
    assert Forecast.model_validate_json(f.model_dump_json()) == f
    with pytest.raises(ValidationError):
        forecast([])
    with pytest.raises(ValidationError, match="strictly increasing"):
        forecast([point(2), point(1)])


def test_forecast_anomaly_detail_is_optional_and_round_trips() -> None:
    old = forecast([point(1)]).model_dump(mode="json")
    for key in ("anomaly_kind", "anomaly_kwh", "anomaly_duration_s", "anomaly_start"):
        old.pop(key)
    assert Forecast.model_validate(old).anomaly_kind is None  # an older producer's document

    flagged = forecast([point(1)]).model_copy(
        update={
            "anomaly": True,
            "anomaly_kind": "stuck_zero",
            "anomaly_kwh": -1.2,
            "anomaly_duration_s": 21_600,
            "anomaly_start": T0 - dt.timedelta(hours=6),
            "expected_kw": 0.2,
        }
    )
    assert Forecast.model_validate_json(flagged.model_dump_json()) == flagged


@pytest.mark.parametrize(
    ("update", "error"),
    [
        ({"anomaly_kind": "excess"}, "anomaly_detail"),
        ({"anomaly": True, "anomaly_kind": "surge"}, "literal_error"),
        ({"anomaly": True, "anomaly_duration_s": 0}, "greater_than"),
        ({"anomaly": True, "anomaly_start": T0}, "anomaly_start"),
    ],
)
def test_forecast_anomaly_detail_is_checked(update: dict, error: str) -> None:
    document = forecast([point(1)]).model_dump(mode="json") | {
        k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in update.items()
    }
    with pytest.raises(ValidationError) as caught:
        Forecast.model_validate(document)
    assert caught.value.errors()[0]["type"] == error


def daily(day: int, *, kwh: float = 10.0) -> DailyPoint:
    return DailyPoint(
        date=dt.date(2007, 4, day),
        kwh=kwh,
        lower_80=8.0,
        upper_80=12.0,
        lower_95=7.0,
        upper_95=13.0,
        is_actual=False,
    )


def monthly(days: list[DailyPoint], *, month: str = "2007-04") -> MonthlyForecast:
    return MonthlyForecast(
        household_id="uci-sceaux",
        month=month,
        as_of=dt.date(2007, 4, 15),
        actual_to_date_kwh=150.0,
        rest_of_month_kwh=160.0,
        month_total_kwh=310.0,
        month_total_lower_80=290.0,
        month_total_upper_80=330.0,
        month_total_lower_95=280.0,
        month_total_upper_95=340.0,
        daily=days,
        model_version="prophet-1",
        plot_keys={"month": "plots/uci-sceaux/2007-04.png"},
    )


def test_monthly_forecast_round_trips() -> None:
    m = monthly([daily(1), daily(2)])
    assert MonthlyForecast.model_validate_json(m.model_dump_json()) == m


def test_daily_point_requires_nested_intervals() -> None:
    with pytest.raises(ValidationError, match=r"kwh=14\.0 is above upper_80=12\.0"):
        daily(1, kwh=14.0)


@pytest.mark.parametrize("month", ["2007-4", "2007-13", "07-04", "2007-04-01"])
def test_monthly_forecast_rejects_bad_month(month: str) -> None:
    with pytest.raises(ValidationError):
        monthly([], month=month)


def test_monthly_forecast_rejects_days_outside_month_or_unordered() -> None:
    with pytest.raises(ValidationError, match="fall in month 2007-05"):
        monthly([daily(1)], month="2007-05")
    with pytest.raises(ValidationError, match="strictly increasing"):
        monthly([daily(2), daily(1)])


def quarantined(original: bytes) -> Quarantined:
    return Quarantined(
        original=original,
        reason="record is not valid UTF-8",
        source="kinesis:readings",
        coordinates=StreamCoordinates(
            stream="readings",
            shard_or_partition="shardId-000000000000",
            sequence_or_offset="49590338271490256608559692538361571095921575989136588898",
            partition_key="MAC000002",
        ),
        quarantined_at=dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    )


@pytest.mark.parametrize("original", [b"", b"\xff\xfe\x00\x89WSR", bytes(range(256)), b"{}"])
def test_quarantined_round_trips_raw_bytes_through_json(original: bytes) -> None:
    q = quarantined(original)
    text = q.model_dump_json()
    assert Quarantined.model_validate_json(text).original == original
    assert Quarantined.model_validate_json(text) == q
    assert Quarantined.model_validate(q.model_dump(mode="json")) == q
    assert q.model_dump()["original"] == original  # Python mode keeps bytes
    assert q.quarantined_at == dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC)


def test_quarantined_stores_base64_in_json() -> None:
    assert json.loads(quarantined(b"\xff\x00").model_dump_json())["original"] == "/wA="


def test_quarantined_rejects_text_that_is_not_base64() -> None:
    with pytest.raises(ValidationError, match="base64"):
        Quarantined.model_validate_json(
            quarantined(b"x").model_dump_json().replace('"eA=="', '"not base64!"')
        )
