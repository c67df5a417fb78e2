"""The wire contract's evolution rule (``shared.schema``): an older reader reads a newer
minor (additive) record and ignores what it does not know; it refuses another major with
a reason, which the consumers quarantine or skip as for any bad record. The ingest input
(:class:`MeterReading`) stays strict."""

from __future__ import annotations

import datetime as dt
import json
import struct
import zlib

import numpy as np
import pytest
from pydantic import ValidationError

from shared.batch import ReadingBatch
from shared.codec import CodecError, decode_record, encode_batch
from shared.schema import (
    MEASUREMENT_FIELDS,
    SCHEMA_VERSION,
    DailySummary,
    Forecast,
    ForecastPoint,
    MeterReading,
    MonthlyForecast,
    Quarantined,
    parse_schema_version,
    wire_schema_version,
)
from shared.validation import parse_reading

T0 = dt.datetime(2007, 4, 1, tzinfo=dt.UTC)
HEADER = struct.Struct("<4sBBBBHII")  # shared.codec's record header (see its layout)


def forecast() -> Forecast:
    points = [
        ForecastPoint(
            timestamp=T0 + dt.timedelta(minutes=i + 1), value_kw=1.0, lower_kw=0.5, upper_kw=2.5
        )
        for i in range(2)
    ]
    return Forecast(
        household_id="uci-0001",
        issued_at=T0,
        resolution_s=60,
        points=points,
        model_version="test-1",
        anomaly_score=0.1,
        anomaly=False,
    )


def newer(document: dict, version: str = "1.7", **added: object) -> bytes:
    """``document`` as a producer of a newer minor writes it: version and new fields."""
    return json.dumps({**document, "schema_version": version, **added}).encode()


def test_contract_writers_keep_the_bare_major_while_the_minor_is_zero():
    """Today's bytes do not change: readers that still pin ``1`` read them."""
    assert wire_schema_version() == SCHEMA_VERSION == 1
    assert json.loads(forecast().model_dump_json())["schema_version"] == 1
    assert wire_schema_version(1, 2) == "1.2"
    assert parse_schema_version(1) == (1, 0)
    assert parse_schema_version("1.12") == (1, 12)


def test_contract_older_reader_reads_a_newer_additive_forecast():
    old = forecast()
    document = json.loads(old.model_dump_json())
    document["points"][0]["p95_kw"] = 3.1  # a nested additive field too
    data = newer(document, confidence="high", weather={"temp_c": 11.5})

    read = Forecast.model_validate_json(data)

    assert read == old  # the fields it knows, unchanged; the new ones ignored
    assert read.schema_version == 1  # what this reader understood


@pytest.mark.parametrize("model", [DailySummary, MonthlyForecast, Quarantined])
def test_contract_every_internal_record_ignores_unknown_fields(model):
    assert model.model_config["extra"] == "ignore"


def test_contract_older_reader_refuses_an_unknown_major_with_a_reason():
    document = json.loads(forecast().model_dump_json())

    for version in (2, "2.0", "0.9"):
        with pytest.raises(ValidationError) as exc:
            Forecast.model_validate_json(newer(document, version))
        (error,) = exc.value.errors(include_url=False)
        assert error["type"] == "unsupported_schema_version"
        assert error["loc"] == ("schema_version",)
        assert (
            f"major {parse_schema_version(version)[0]} is not this reader's major 1"
            in (error["msg"])
        )


@pytest.mark.parametrize("version", [True, "1", "v1.2", "1.2.3", 1.5, None, -1])
def test_contract_malformed_version_is_refused(version):
    document = json.loads(forecast().model_dump_json())

    with pytest.raises(ValidationError) as exc:
        Forecast.model_validate({**document, "schema_version": version})
    assert exc.value.errors()[0]["type"] == "unsupported_schema_version"


def test_contract_ingest_input_stays_strict():
    """A client's unknown field is refused even with a newer minor: typos must not pass."""
    reading = {
        "household_id": "uci-0001",
        "timestamp": "2007-04-01T00:00:00Z",
        "global_active_power_kw": 1.5,
    }

    assert MeterReading.model_validate({**reading, "schema_version": "1.3"}).schema_version == 1
    rejection = parse_reading(newer(reading, "1.3", global_active_power_kW=2.0))
    assert rejection.code == "unknown_field"
    assert "global_active_power_kW" in rejection.reason
    rejection = parse_reading(newer(reading, "2.0"))
    assert rejection.code == "unsupported_schema_version"
    assert "major 2" in rejection.reason


def _with_extra_column(record: bytes, values: np.ndarray, bit: int) -> bytes:
    """``record`` as a newer minor writes it: one more column, at mask bit ``bit``."""
    magic, version, schema, flags, id_len, mask, count, _ = HEADER.unpack_from(record)
    household = record[HEADER.size : HEADER.size + id_len]
    payload = record[HEADER.size + id_len : -4]
    raw = zlib.decompress(payload) if flags & 1 else payload
    stored = [i for i in range(16) if mask >> i & 1]
    place = sum(1 for i in stored if i < bit)  # columns are stored in bit order
    cut = 8 * count * (1 + place)
    raw = raw[:cut] + values.astype("<f8").tobytes() + raw[cut:]
    body = HEADER.pack(magic, version, schema, 0, id_len, mask | 1 << bit, count, len(raw))
    body += household + raw
    return body + struct.pack("<I", zlib.crc32(body))


def test_contract_older_codec_reader_skips_a_newer_column():
    stamps = np.array([0, 60_000_000, 120_000_000], dtype=np.int64) + 1_175_385_600_000_000
    batch = ReadingBatch(
        "uci-0001",
        stamps,
        {"global_active_power_kw": np.array([1.0, 2.0, 3.0]), "voltage_v": np.full(3, 230.0)},
    )
    (record,) = encode_batch(batch)
    unknown_bit = len(MEASUREMENT_FIELDS) + 2  # a column this reader does not know

    decoded = decode_record(_with_extra_column(record, np.array([7.0, 8.0, 9.0]), unknown_bit))

    assert decoded.household_id == "uci-0001"
    assert np.array_equal(decoded.timestamps_us, stamps)
    assert set(decoded.present_columns()) == {"global_active_power_kw", "voltage_v"}
    assert np.array_equal(decoded.columns["global_active_power_kw"], [1.0, 2.0, 3.0])
    assert np.array_equal(decoded.columns["voltage_v"], [230.0] * 3)


def test_contract_codec_refuses_another_major_with_a_reason():
    batch = ReadingBatch(
        "uci-0001",
        np.array([0], dtype=np.int64),
        {"energy_kwh": np.ones(1), "interval_s": np.full(1, 1800.0)},
    )
    (record,) = encode_batch(batch)
    fields = list(HEADER.unpack_from(record))
    fields[2] = 2  # schema major
    body = HEADER.pack(*fields) + record[HEADER.size : -4]

    with pytest.raises(CodecError) as exc:
        decode_record(body + struct.pack("<I", zlib.crc32(body)))
    assert exc.value.code == "unsupported_version"
    assert "schema version 2" in exc.value.reason
    assert "1.x" in exc.value.reason
