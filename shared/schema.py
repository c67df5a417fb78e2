"""The wire contract: versioned pydantic models shared by every service.

Why one module: a reading, a forecast or a quarantined record must mean the same thing in
the gateway, the stream consumers and the dashboards. Every model carries
``schema_version`` so a consumer can refuse a payload it does not understand instead of
silently misreading it. Every model is frozen.

How the contract changes (the README's "Wire contract" section has the deploy order):

* a **minor** change is additive (a new optional field, a new codec column): writers send
  ``"MAJOR.MINOR"``, and every reader of the same major reads it, ignoring what it does
  not know. Internal records (forecasts, summaries, monthly results, quarantine) therefore
  ignore unknown fields.
* a **major** change is anything else: a reader refuses an unknown major with code
  ``unsupported_schema_version`` and a reason (quarantine or skip, as for any bad record);
  a new major goes to a new stream/topic, or its consumers deploy first.
* :class:`MeterReading` is also the ingest API's *input* from external clients, and stays
  strict: an unknown field there is refused, since a client's typo
  (``global_active_power_kW``) would otherwise drop a measurement silently.

All datetimes are timezone-aware and normalised to UTC; all floats are finite
(``NaN``/``inf`` are rejected, absence is spelled ``None``).

Example:
    >>> r = MeterReading.model_validate_json(
    ...     '{"household_id": "uci-sceaux", "timestamp": "2007-04-01T00:00:00+01:00",'
    ...     ' "global_active_power_kw": 3.48}'
    ... )
    >>> r.timestamp.isoformat(), r.global_active_power_kw
    ('2007-03-31T23:00:00+00:00', 3.48)
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import itertools
import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "ANOMALY_KINDS",
    "HOUSEHOLD_ID_PATTERN",
    "MEASUREMENT_FIELDS",
    "SCHEMA_MINOR",
    "SCHEMA_VERSION",
    "AnomalyKind",
    "DailyPoint",
    "DailySummary",
    "Forecast",
    "ForecastPoint",
    "HouseholdId",
    "MeterReading",
    "MonthlyForecast",
    "Quarantined",
    "SchemaVersion",
    "StreamCoordinates",
    "UtcDatetime",
    "parse_schema_version",
    "wire_schema_version",
]

SCHEMA_VERSION: Final = 1
"""The contract's MAJOR version: a reader accepts records of this major only."""
SCHEMA_MINOR: Final = 0
"""The contract's MINOR version: additive changes since the major (0: none yet)."""
_SCHEMA_VERSION_TEXT: Final = re.compile(r"(\d{1,4})\.(\d{1,4})")


def wire_schema_version(major: int = SCHEMA_VERSION, minor: int = SCHEMA_MINOR) -> int | str:
    """What writers put in ``schema_version``: ``"MAJOR.MINOR"``, or the bare major while
    the minor is 0, so that today's records stay byte-identical and readable by readers
    that still pin the integer ``1``."""
    return major if minor == 0 else f"{major}.{minor}"


def parse_schema_version(value: Any) -> tuple[int, int]:
    """``(major, minor)`` of a ``schema_version``: an integer major (minor 0) or
    ``"MAJOR.MINOR"`` text. Raises ``PydanticCustomError`` for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value, 0
    if isinstance(value, str) and (match := _SCHEMA_VERSION_TEXT.fullmatch(value)):
        return int(match[1]), int(match[2])
    raise PydanticCustomError(
        "unsupported_schema_version",
        "schema_version must be an integer major or 'MAJOR.MINOR' text such as '1.2'",
    )


def _readable_schema_version(value: Any) -> int | str:
    """Any minor of this reader's major is readable (what it does not know is ignored);
    another major is refused with a reason. The model then holds the version it read as:
    this reader's own (its fields are what this reader understood)."""
    major, _ = parse_schema_version(value)
    if major != SCHEMA_VERSION:
        raise PydanticCustomError(
            "unsupported_schema_version",
            "schema_version {version}: major {major} is not this reader's major "
            "{ours}; a new major is read from its own stream, or after its consumers are "
            "deployed",
            {"version": str(value), "major": major, "ours": SCHEMA_VERSION},
        )
    return wire_schema_version()


SchemaVersion = Annotated[int | str, BeforeValidator(_readable_schema_version)]
"""``schema_version`` of every model: any ``1.x`` is read, another major is refused."""

#: What a flagged anomaly is (``Forecast.anomaly_kind``): one unusually large bin; a run
#: above or below the household's usual consumption for that time of day; a change that
#: has lasted (the new level becomes the usual one after a few days); a meter reading
#: (almost) zero for hours while the household usually uses energy.
ANOMALY_KINDS: Final = ("spike", "excess", "deficit", "level_shift", "stuck_zero")
AnomalyKind = Literal["spike", "excess", "deficit", "level_shift", "stuck_zero"]

HOUSEHOLD_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
"""London ids look like ``MAC000002``, the UCI house is ``uci-sceaux``. The id is also the
Kinesis partition key and part of S3 keys, hence the conservative alphabet."""

HouseholdId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=HOUSEHOLD_ID_PATTERN)
]


def _as_utc(value: dt.datetime) -> dt.datetime:
    """Reject naive datetimes: guessing a zone is how series end up shifted by an hour."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise PydanticCustomError(
            "naive_timestamp",
            "timestamp {value} has no timezone; send an aware time such as '2007-04-01T00:00:00Z'",
            {"value": value.isoformat()},
        )
    return value.astimezone(dt.UTC)


_ISO_DATE_START: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


_LOOKS_LIKE_MS: Final = 1e11
"""Unix seconds past this are after year 5138: such a number is almost surely in ms."""


def _timestamp_input(value: Any) -> Any:
    """One rule per input type, no guessing.

    * text must be an ISO 8601 date-time: pydantic would read ``"+0.0"`` or ``"1e9"`` as
      Unix time;
    * a number (a JSON number) is **Unix seconds**, always, UTC by definition. Pydantic
      would silently read a number above 2e10 as *milliseconds*; here 1796643060000 is
      refused with a reason (it is far outside any plausible date as seconds) instead of
      being quietly reinterpreted. Seconds out of the range of a date are refused too.
    """
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, bool) or (isinstance(value, str) and not _ISO_DATE_START.match(value)):
        raise PydanticCustomError(
            "datetime_not_iso",
            "timestamp text must be an ISO 8601 date-time with a timezone, such as "
            "'2007-04-01T00:00:00Z'",
        )
    if isinstance(value, int | float):
        try:
            return dt.datetime.fromtimestamp(value, dt.UTC)
        except (OverflowError, OSError, ValueError):
            hint = (
                " (it looks like milliseconds: divide by 1000)"
                if _LOOKS_LIKE_MS <= value < 1e17
                else ""
            )
            raise PydanticCustomError(
                "datetime_out_of_range",
                "a JSON number timestamp is Unix seconds; {value} s is not a representable "
                "date{hint}",
                {"value": repr(value)[:40], "hint": hint},
            ) from None
    return value


UtcDatetime = Annotated[dt.datetime, BeforeValidator(_timestamp_input), AfterValidator(_as_utc)]
"""A timezone-aware datetime, normalised to UTC: ISO 8601 text with an offset, a number of
Unix seconds (never milliseconds), or an aware datetime."""

# Strict: a number sent as a JSON string or a boolean is a producer bug, not a number.
Measurement = Annotated[float, Strict()]

MEASUREMENT_FIELDS: Final[tuple[str, ...]] = (
    "global_active_power_kw",
    "global_reactive_power_kw",
    "voltage_v",
    "global_intensity_a",
    "sub_metering_1_wh",
    "sub_metering_2_wh",
    "sub_metering_3_wh",
    "energy_kwh",
    "interval_s",
)
"""The numeric fields of :class:`MeterReading`, in the order the binary codec stores them.
Append only: the codec's column bitmask gives bit ``i`` to ``MEASUREMENT_FIELDS[i]``."""


class _WireModel(BaseModel):
    """Common configuration: versioned, immutable, finite floats; unknown fields of a newer
    minor version are ignored (internal records: see the module's evolution rule)."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    schema_version: SchemaVersion = SCHEMA_VERSION


class MeterReading(_WireModel):
    """One smart-meter reading of one household.

    UCI-style meters send instantaneous (minute-averaged) power; London-style meters send
    the energy of an interval. Either ``global_active_power_kw`` or both ``energy_kwh`` and
    ``interval_s`` must be present, otherwise the reading carries no consumption at all.

    Strict, unlike the internal records: external clients send it to the ingest API, and
    an unknown field there is refused (a typo would otherwise lose a measurement). On the
    readings stream it travels in the codec, whose new columns old readers skip.
    """

    model_config = ConfigDict(extra="forbid")

    household_id: HouseholdId
    timestamp: UtcDatetime
    global_active_power_kw: Measurement | None = None
    global_reactive_power_kw: Measurement | None = None
    voltage_v: Measurement | None = None
    global_intensity_a: Measurement | None = None
    sub_metering_1_wh: Measurement | None = None
    sub_metering_2_wh: Measurement | None = None
    sub_metering_3_wh: Measurement | None = None
    energy_kwh: Measurement | None = None
    interval_s: Measurement | None = None

    @model_validator(mode="after")
    def _has_consumption(self) -> MeterReading:
        if self.global_active_power_kw is None and (
            self.energy_kwh is None or self.interval_s is None
        ):
            raise PydanticCustomError(
                "missing_measurement",
                "a reading needs global_active_power_kw, or both energy_kwh and interval_s",
            )
        return self


def _require_ordered(name: str, values: dict[str, float]) -> None:
    """Raise unless ``values`` (in the given order) are non-decreasing.

    Shared by every model with a point forecast inside prediction intervals, so that a
    dashboard never draws a point outside its own band.
    """
    items = list(values.items())
    for (lo_name, lo), (hi_name, hi) in itertools.pairwise(items):
        if lo > hi:
            raise PydanticCustomError(
                "unordered_interval",
                "{name}: {lo_name}={lo} is above {hi_name}={hi}",
                {"name": name, "lo_name": lo_name, "lo": lo, "hi_name": hi_name, "hi": hi},
            )


class DailySummary(_WireModel):
    """What the monthly service needs of a household-day, without reading the archive.

    The archive writes one per household and UTC day (an S3 object whose events trigger
    the monthly forecast), so it is part of the wire contract.

    ``coverage`` is the fraction of the day covered by readings: each reading covers its
    interval (``interval_s``, else one minute), overlaps counted once, so 1,440 minute
    readings or 48 half-hours make 1.0.
    """

    household_id: HouseholdId
    date: dt.date
    readings: Annotated[int, Field(ge=1)]
    kwh: float
    peak_kw: float
    coverage: Annotated[float, Field(ge=0, le=1)]
    first_timestamp: UtcDatetime
    last_timestamp: UtcDatetime


class ForecastPoint(_WireModel):
    """One step of a short-term forecast with its prediction interval."""

    timestamp: UtcDatetime
    value_kw: float
    lower_kw: float
    upper_kw: float

    @model_validator(mode="after")
    def _ordered(self) -> ForecastPoint:
        if self.lower_kw <= self.value_kw <= self.upper_kw:
            return self  # the common case, without building the message's inputs
        _require_ordered(
            "forecast point",
            {"lower_kw": self.lower_kw, "value_kw": self.value_kw, "upper_kw": self.upper_kw},
        )
        return self


class Forecast(_WireModel):
    """A real-time forecast for one household, with the anomaly verdict on the latest data."""

    household_id: HouseholdId
    issued_at: UtcDatetime
    resolution_s: Annotated[int, Field(gt=0)]
    points: Annotated[list[ForecastPoint], Field(min_length=1)]
    model_version: Annotated[str, StringConstraints(min_length=1)]
    #: The anomaly verdict on the bin completed just before ``issued_at``: ``anomaly_score``
    #: is in multiples of the detector's limits, ``anomaly`` whether it is flagged.
    anomaly_score: float
    anomaly: bool
    #: Why this forecast is not from the multivariate model (e.g. an energy-only meter
    #: gets the univariate fallback); ``None`` for the model's own forecasts.
    fallback_reason: str | None = None
    #: Where ``anomaly`` is true (optional, newer producers): what the deviation is, its
    #: energy above (+) or below (-) the household's usual consumption from
    #: ``anomaly_start`` to ``issued_at`` (kWh), and that duration.
    anomaly_kind: AnomalyKind | None = None
    anomaly_kwh: float | None = None
    anomaly_duration_s: Annotated[int, Field(gt=0)] | None = None
    anomaly_start: UtcDatetime | None = None
    #: The household's usual mean power for the completed bin (the anomaly reference).
    expected_kw: float | None = None

    @model_validator(mode="after")
    def _points_increase(self) -> Forecast:
        stamps = [p.timestamp for p in self.points]
        if any(a >= b for a, b in itertools.pairwise(stamps)):
            raise PydanticCustomError(
                "unordered_points", "forecast points must have strictly increasing timestamps"
            )
        return self

    @model_validator(mode="after")
    def _anomaly_detail_only_when_flagged(self) -> Forecast:
        detail = (self.anomaly_kind, self.anomaly_kwh, self.anomaly_duration_s, self.anomaly_start)
        if not self.anomaly and any(v is not None for v in detail):
            raise PydanticCustomError(
                "anomaly_detail", "anomaly_kind/kwh/duration_s/start need anomaly = true"
            )
        if self.anomaly_start is not None and self.anomaly_start >= self.issued_at:
            raise PydanticCustomError("anomaly_start", "anomaly_start must be before issued_at")
        return self


class DailyPoint(_WireModel):
    """One day of a monthly forecast: an actual (``is_actual``) or a predicted total."""

    date: dt.date
    kwh: float
    lower_80: float
    upper_80: float
    lower_95: float
    upper_95: float
    is_actual: bool

    @model_validator(mode="after")
    def _ordered(self) -> DailyPoint:
        _require_ordered(
            f"daily point {self.date}",
            {
                "lower_95": self.lower_95,
                "lower_80": self.lower_80,
                "kwh": self.kwh,
                "upper_80": self.upper_80,
                "upper_95": self.upper_95,
            },
        )
        return self


class MonthlyForecast(_WireModel):
    """Month-to-date actuals plus the forecast of the rest of the month, per household."""

    household_id: HouseholdId
    month: Annotated[str, StringConstraints(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]
    as_of: dt.date
    actual_to_date_kwh: float
    rest_of_month_kwh: float
    month_total_kwh: float
    month_total_lower_80: float
    month_total_upper_80: float
    month_total_lower_95: float
    month_total_upper_95: float
    daily: list[DailyPoint]
    model_version: Annotated[str, StringConstraints(min_length=1)]
    plot_keys: dict[str, str] = Field(default_factory=dict)
    #: Why this forecast is not from the model (e.g. a short history gets the trailing-mean
    #: fallback); ``None`` for the model's own forecasts.
    fallback_reason: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> MonthlyForecast:
        _require_ordered(
            f"month total {self.month}",
            {
                "month_total_lower_95": self.month_total_lower_95,
                "month_total_lower_80": self.month_total_lower_80,
                "month_total_kwh": self.month_total_kwh,
                "month_total_upper_80": self.month_total_upper_80,
                "month_total_upper_95": self.month_total_upper_95,
            },
        )
        days = [p.date for p in self.daily]
        if any(d.strftime("%Y-%m") != self.month for d in days):
            raise PydanticCustomError(
                "date_outside_month",
                "daily points must all fall in month {month}",
                {"month": self.month},
            )
        if any(a >= b for a, b in itertools.pairwise(days)):
            raise PydanticCustomError(
                "unordered_points", "daily points must have strictly increasing dates"
            )
        return self


class StreamCoordinates(_WireModel):
    """Where a record came from, so a quarantined record can be traced and replayed."""

    stream: str
    shard_or_partition: str
    sequence_or_offset: str
    partition_key: str | None = None


class Quarantined(_WireModel):
    """A record we refused, kept verbatim with the reason (errors are data, not logs).

    ``original`` holds the raw bytes, which need not be UTF-8. In JSON it is standard
    base64; in Python it stays ``bytes``. A ``str`` given for it is read as base64 in both
    modes, so ``model_validate(model_dump(mode="json"))`` round-trips too.
    """

    original: bytes
    reason: str
    source: Annotated[str, StringConstraints(min_length=1)]
    coordinates: StreamCoordinates | None = None
    quarantined_at: UtcDatetime

    @field_validator("original", mode="before")
    @classmethod
    def _from_base64(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise PydanticCustomError(
                    "bad_base64",
                    "original must be base64 when given as text: {error}",
                    {"error": str(exc)},
                ) from exc
        return value

    @field_serializer("original", when_used="json")
    def _to_base64(self, value: bytes) -> str:
        return base64.b64encode(value).decode("ascii")
