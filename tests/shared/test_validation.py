"""Edge validation: errors are data, with clear reasons."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.batch import ReadingBatch, datetime_to_us
from shared.schema import MEASUREMENT_FIELDS, MeterReading
from shared.uci import UCI_HEADER, iter_uci
from shared.validation import (
    DEFAULT_LIMITS,
    Rejection,
    SanityLimits,
    check_sanity,
    parse_reading,
    sanity_mask,
    validate_reading,
)

T0 = dt.datetime(2007, 4, 1, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(minutes=10)
T0_US = datetime_to_us(T0)
FAR_FUTURE_US = datetime_to_us(dt.datetime(2100, 1, 1, tzinfo=dt.UTC))


def payload(**changes: object) -> dict[str, object]:
    """The first UCI row of April 2007 as JSON, with changes (None deletes a field)."""
    base: dict[str, object] = {
        "household_id": "uci-sceaux",
        "timestamp": "2007-04-01T00:00:00Z",
        "global_active_power_kw": 3.48,
        "global_reactive_power_kw": 0.238,
        "voltage_v": 239.53,
        "global_intensity_a": 14.4,
        "sub_metering_1_wh": 2.0,
        "sub_metering_2_wh": 1.0,
        "sub_metering_3_wh": 18.0,
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def raw(**changes: object) -> bytes:
    return json.dumps(payload(**changes)).encode()


def test_validate_reading_accepts_a_real_reading() -> None:
    reading = validate_reading(raw(), now=NOW)
    assert isinstance(reading, MeterReading)
    assert reading.voltage_v == 239.53


@pytest.mark.parametrize("form", [raw, lambda: raw().decode(), payload, lambda: bytearray(raw())])
def test_validate_reading_accepts_bytes_text_and_mappings(form: Callable[[], object]) -> None:
    assert isinstance(validate_reading(form(), now=NOW), MeterReading)


@pytest.mark.parametrize(
    ("record", "code", "field", "shown"),
    [
        (b'{"household_id": "\xff"}', "bad_encoding", None, "UTF-8"),
        (b'{"household_id": ', "malformed_json", None, "JSON"),
        (b"[1, 2]", "wrong_type", None, "list"),
        (b"[" * 100_000, "malformed_json", None, "JSON"),
        (raw(global_active_power_kw="3.48"), "wrong_type", "global_active_power_kw", "'3.48'"),
        (raw(household_id=None), "missing_field", "household_id", "required"),
        (raw(global_active_power_kw=None), "missing_field", "global_active_power_kw", "energy_kwh"),
        (raw(watts=1), "unknown_field", "watts", "1"),
        (raw().replace(b"239.53", b"NaN"), "not_finite", "voltage_v", "nan"),
        (raw().replace(b"239.53", b"1e400"), "not_finite", "voltage_v", "inf"),
        (raw(global_active_power_kw=-0.1), "negative_power", "global_active_power_kw", "-0.1"),
        (raw(global_reactive_power_kw=-2.0), "negative_power", "global_reactive_power_kw", "-2"),
        (raw(sub_metering_1_wh=-1.0), "negative_energy", "sub_metering_1_wh", "-1.0"),
        (raw(energy_kwh=-0.5, interval_s=60.0), "negative_energy", "energy_kwh", "-0.5"),
        (raw(global_intensity_a=-3.0), "negative_current", "global_intensity_a", "-3.0"),
        (raw(interval_s=0.0), "bad_interval", "interval_s", "0.0"),
        (raw(global_active_power_kw=150.0), "implausible_power", "global_active_power_kw", "150"),
        (
            raw(global_active_power_kw=None, energy_kwh=60.0, interval_s=1800.0),
            "implausible_power",
            "energy_kwh",
            "60.0",
        ),
        (raw(voltage_v=0.0), "implausible_voltage", "voltage_v", "0.0 V"),
        (raw(voltage_v=10_000.0), "implausible_voltage", "voltage_v", "10000.0 V"),
        (raw(sub_metering_3_wh=80.0), "submetering_exceeds_total", "sub_metering_1_wh", "83.0"),
        (raw(timestamp="2007-04-01T00:15:01Z"), "future_timestamp", "timestamp", "00:15:01"),
        (raw(timestamp="2007-04-01T00:00:00"), "naive_timestamp", "timestamp", "timezone"),
        (raw(timestamp="yesterday"), "bad_timestamp", "timestamp", "yesterday"),
        (raw(timestamp="+0.0"), "bad_timestamp", "timestamp", "+0.0"),
        (raw(household_id="a b"), "bad_household_id", "household_id", "'a b'"),
        (raw(schema_version=2), "unsupported_schema_version", "schema_version", "2"),
        # issue 13: a plausible range for every field, a timestamp floor, no ms guessing
        (
            raw(global_reactive_power_kw=1e308),
            "implausible_power",
            "global_reactive_power_kw",
            "1e+308",
        ),
        (raw(global_intensity_a=1e308), "implausible_current", "global_intensity_a", "1e+308"),
        (
            raw(global_active_power_kw=None, energy_kwh=1e306, interval_s=1e308),
            "bad_interval",
            "interval_s",
            "1e+308",
        ),
        (raw(energy_kwh=1e306), "implausible_power", "energy_kwh", "1e+306"),
        (raw(interval_s=0.5), "bad_interval", "interval_s", "0.5"),
        (raw(interval_s=86_401.0), "bad_interval", "interval_s", "86401.0"),
        (raw(timestamp="1900-01-01T00:00:00Z"), "implausible_timestamp", "timestamp", "1900"),
        (raw(timestamp="1970-01-01T00:00:00Z"), "implausible_timestamp", "timestamp", "1970"),
        (raw(timestamp=0), "implausible_timestamp", "timestamp", "1970-01-01"),
        (raw(timestamp="0001-01-01T00:00:00Z"), "implausible_timestamp", "timestamp", "0001"),
        (raw(timestamp=1175385600000), "bad_timestamp", "timestamp", "milliseconds"),
        (raw(timestamp=1e308), "bad_timestamp", "timestamp", "Unix seconds"),
        (
            b'{"household_id": "../x", "household_id": "h1", "timestamp": 1175385600,'
            b' "global_active_power_kw": 1}',
            "malformed_json",
            "household_id",
            "'household_id'",
        ),
    ],
)
def test_validate_reading_rejects_with_code_field_and_value(
    record: bytes, code: str, field: str | None, shown: str
) -> None:
    rejection = validate_reading(record, now=NOW)
    assert isinstance(rejection, Rejection)
    assert (rejection.code, rejection.field) == (code, field)
    assert shown in rejection.reason
    if field is not None and code not in ("submetering_exceeds_total", "future_timestamp"):
        assert field in rejection.reason


def test_validate_reading_reads_a_json_number_as_unix_seconds() -> None:
    reading = validate_reading(raw(timestamp=1175385600), now=NOW)  # 2007-04-01T00:00Z
    assert isinstance(reading, MeterReading)
    assert reading.timestamp == T0
    fraction = validate_reading(raw(timestamp=1175385600.5), now=NOW)
    assert isinstance(fraction, MeterReading)
    assert fraction.timestamp == T0 + dt.timedelta(milliseconds=500)


def test_validate_reading_refuses_repeated_keys_in_nested_objects() -> None:
    record = raw().replace(b'"voltage_v"', b'"voltage_v": {"a": 1, "a": 2}, "v2"')
    rejection = validate_reading(record, now=NOW)
    assert isinstance(rejection, Rejection)
    assert rejection.code == "malformed_json"
    assert "voltage_v.a" in rejection.reason


def test_sanity_limits_timestamp_floor_is_configurable() -> None:
    old = raw(timestamp="1985-06-01T00:00:00Z")
    assert isinstance(validate_reading(old, now=NOW), Rejection)
    lenient = SanityLimits(min_timestamp=dt.datetime(1980, 1, 1, tzinfo=dt.UTC))
    assert isinstance(validate_reading(old, now=NOW, limits=lenient), MeterReading)


def test_validate_reading_bounds_the_reason_length() -> None:
    rejection = validate_reading(raw(household_id="x" * 1_000_000), now=NOW)
    assert isinstance(rejection, Rejection)
    assert rejection.code == "bad_household_id"
    assert len(rejection.reason) < 300


def test_validate_reading_counts_further_problems() -> None:
    rejection = validate_reading(raw(voltage_v="x", watts=1), now=NOW)
    assert isinstance(rejection, Rejection)
    assert rejection.reason.endswith("(+1 more problem)")


@pytest.mark.parametrize(
    ("changes", "ok"),
    [
        # 3.48 kW over the default 60 s = 58 Wh; tolerance 3 Wh
        ({"sub_metering_3_wh": 57.9}, True),  # 2 + 1 + 57.9 = 60.9 Wh
        ({"sub_metering_3_wh": 58.1}, False),  # 61.1 Wh
        ({"sub_metering_3_wh": 200.0, "interval_s": 240.0}, True),  # 232 Wh available
        ({"global_active_power_kw": None, "energy_kwh": 0.05, "interval_s": 1800.0}, True),
        ({"global_active_power_kw": None, "energy_kwh": 0.01, "interval_s": 1800.0}, False),
    ],
)
def test_check_sanity_submetering_tolerance(changes: dict, ok: bool) -> None:
    reading = validate_reading(raw(**changes), now=NOW)
    assert isinstance(reading, MeterReading) is ok


def test_check_sanity_allows_clock_skew_up_to_the_limit() -> None:
    edge = raw(timestamp="2007-04-01T00:15:00Z")  # NOW + 300 s
    assert isinstance(validate_reading(edge, now=NOW), MeterReading)
    strict = SanityLimits(max_future_skew_s=0)
    assert isinstance(validate_reading(edge, now=NOW, limits=strict), Rejection)


def test_check_sanity_needs_an_aware_clock() -> None:
    reading = parse_reading(raw())
    assert isinstance(reading, MeterReading)
    with pytest.raises(ValueError, match="timezone-aware"):
        check_sanity(reading, now=dt.datetime(2007, 4, 1))


@pytest.mark.parametrize(
    "changes",
    [
        {"min_interval_s": 0.0},
        {"max_interval_s": 30.0},  # below the default interval
        {"max_intensity_a": 0.0},
        {"min_timestamp": dt.datetime(1990, 1, 1)},  # naive
        {"max_timestamp": dt.datetime(1980, 1, 1, tzinfo=dt.UTC)},
    ],
)
def test_sanity_limits_refuse_inconsistent_ranges(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"need|must"):
        SanityLimits(**changes)  # type: ignore[arg-type]


def test_sanity_limits_refuse_inconsistent_values() -> None:
    with pytest.raises(ValueError, match="voltage"):
        SanityLimits(min_voltage_v=300, max_voltage_v=80)


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_validate_reading_never_raises_on_arbitrary_input(record: bytes) -> None:
    assert isinstance(validate_reading(record, now=NOW), MeterReading | Rejection)


# Values around every limit, so random rows break rules often and in combination.
physical = st.one_of(
    st.floats(-5.0, 350.0),
    st.sampled_from([0.0, -0.0, 80.0, 300.0, 100.0, 1e300, -1e-300, 5e-324]),
)


@st.composite
def physical_readings(draw: st.DrawFn) -> MeterReading:
    values = {name: draw(st.none() | physical) for name in MEASUREMENT_FIELDS}
    if values["global_active_power_kw"] is None:
        values["energy_kwh"], values["interval_s"] = draw(physical), draw(physical)
    skew_s = draw(st.integers(-3_600, 3_600) | st.sampled_from([299, 300, 301]))
    return MeterReading(
        household_id="h1",
        timestamp=NOW + dt.timedelta(seconds=skew_s, microseconds=draw(st.integers(-1, 1))),
        **values,
    )


@settings(max_examples=60)
@given(st.lists(physical_readings(), min_size=1, max_size=25))
def test_sanity_mask_agrees_with_check_sanity(models: list[MeterReading]) -> None:
    ok, rejected = sanity_mask(ReadingBatch.from_readings(models), now_us=datetime_to_us(NOW))
    by_row = dict(rejected)
    assert len(by_row) == len(rejected)
    for row, model in enumerate(models):
        single = check_sanity(model, now=NOW)
        assert ok[row] == (single is None)
        assert by_row.get(row) == single


def test_sanity_mask_catches_what_a_decoded_record_may_hold() -> None:
    batch = ReadingBatch(
        "h1",
        np.full(3, T0_US, dtype=np.int64),
        {
            "global_active_power_kw": np.array([1.0, np.nan, np.inf]),
            "energy_kwh": np.array([np.nan, 0.1, np.nan]),
        },
    )
    ok, rejected = sanity_mask(batch, now_us=T0_US)
    assert ok.tolist() == [True, False, False]
    assert [(row, r.code, r.field) for row, r in rejected] == [
        (1, "missing_field", "global_active_power_kw"),
        (2, "not_finite", "global_active_power_kw"),
    ]


def test_sanity_mask_reports_rows_in_order_with_first_broken_rule() -> None:
    batch = ReadingBatch(
        "h1",
        T0_US + np.array([0, 0, 10**15, 0], dtype=np.int64),
        {
            "global_active_power_kw": np.array([-1.0, 1.0, 1.0, 1.0]),
            "voltage_v": np.array([0.0, 0.0, 230.0, 230.0]),
        },
    )
    ok, rejected = sanity_mask(batch, now_us=T0_US)
    assert ok.tolist() == [False, False, False, True]
    assert [(row, r.code) for row, r in rejected] == [
        (0, "negative_power"),  # also implausible voltage: the first rule wins
        (1, "implausible_voltage"),
        (2, "future_timestamp"),
    ]


def test_sanity_mask_accepts_all_of_april_2007(april_batch: ReadingBatch) -> None:
    ok, rejected = sanity_mask(april_batch, now_us=FAR_FUTURE_US)
    assert rejected == []
    assert ok.all()
    assert len(ok) == 39_477


def uci_row(line: str) -> ReadingBatch:
    text = f"{UCI_HEADER}\r\n{line}\r\n".encode()
    return ReadingBatch.concat([chunk.readings for chunk in iter_uci(io.BytesIO(text))])


def test_submetering_tolerance_covers_the_worst_real_row() -> None:
    # The UCI row with the largest sub-metering excess: 2 + 9 + 18 = 29 Wh sub-metered,
    # 1.596 kW * 60 s = 26.6 Wh in total, so 2.4 Wh above (counters count whole Wh).
    worst = uci_row("23/9/2007;09:55:00;1.596;0.000;239.980;7.000;2.000;9.000;18.000")
    assert sanity_mask(worst, now_us=FAR_FUTURE_US)[1] == []
    tighter = SanityLimits(submetering_tolerance_wh=2.3)
    [(_, rejection)] = sanity_mask(worst, now_us=FAR_FUTURE_US, limits=tighter)[1]
    assert rejection.code == "submetering_exceeds_total"
    assert "29.0 Wh" in rejection.reason


@pytest.mark.slow
def test_sanity_mask_accepts_every_complete_row_of_the_full_uci_file(full_uci: Path) -> None:
    complete = 0
    excess: list[np.ndarray] = []
    for chunk in iter_uci(full_uci):
        batch = chunk.readings
        _, rejected = sanity_mask(batch, now_us=FAR_FUTURE_US, limits=DEFAULT_LIMITS)
        assert rejected == [], rejected[:3]
        complete += len(batch)
        cols = batch.columns
        submetered = sum(cols[f"sub_metering_{i}_wh"] for i in (1, 2, 3))
        excess.append(submetered - cols["global_active_power_kw"] * 60 / 3.6)
    assert complete == 2_049_280
    # The measurement behind SanityLimits.submetering_tolerance_wh (see its docstring).
    over = np.concatenate(excess)
    assert int((over > 0.01).sum()) == 1_050  # above P's rounding (0.0083 Wh)
    assert int((over > 1).sum()) == 33
    assert int((over > 2).sum()) == 2
    assert over.max() == pytest.approx(2.4)


@pytest.mark.slow
def test_sanity_limits_leave_margin_above_the_measured_uci_maxima(full_uci: Path) -> None:
    """The measurement behind the SanityLimits table (UCI columns)."""
    highest = dict.fromkeys(MEASUREMENT_FIELDS, 0.0)
    earliest = FAR_FUTURE_US
    for chunk in iter_uci(full_uci):
        for name in highest:
            column = chunk.readings.columns[name]
            if len(column) and not np.isnan(column).all():
                highest[name] = max(highest[name], float(np.nanmax(column)))
        if len(chunk.readings):
            earliest = min(earliest, int(chunk.readings.timestamps_us.min()))
    assert highest["global_active_power_kw"] == pytest.approx(11.122)
    assert highest["global_reactive_power_kw"] == pytest.approx(1.39)
    assert highest["global_intensity_a"] == pytest.approx(48.4)
    assert highest["voltage_v"] == pytest.approx(254.15)
    assert highest["global_reactive_power_kw"] < DEFAULT_LIMITS.max_reactive_power_kw / 50
    assert highest["global_intensity_a"] < DEFAULT_LIMITS.max_intensity_a / 10
    assert earliest > DEFAULT_LIMITS.min_timestamp_us


@pytest.mark.slow
def test_sanity_mask_accepts_every_london_half_hour() -> None:
    """All 1,674,718 London half-hourly readings (energy over 1,800 s) are plausible."""
    import pandas as pd

    from tests.conftest import DATA_DIR

    path = DATA_DIR / "lcl_halfhourly_2013_100households.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    frame = pd.read_csv(path)
    energy = frame["energy(kWh/hh)"].to_numpy(np.float64)
    stamps = pd.to_datetime(frame["tstp"]).to_numpy().astype("datetime64[us]")  # UTC
    batch = ReadingBatch(
        "lcl",
        stamps.astype(np.int64),
        {"energy_kwh": energy, "interval_s": np.full(len(energy), 1800.0)},
    )
    ok, rejected = sanity_mask(batch, now_us=FAR_FUTURE_US)
    assert rejected == [], rejected[:3]
    assert int(ok.sum()) == len(batch) == 1_674_718
    assert energy.max() == pytest.approx(6.528, abs=1e-3)  # 13.06 kW mean, limit 100 kW
