"""Edge validation: turn raw input into a :class:`MeterReading` or a :class:`Rejection`.

Why: one poison record must become a per-record failure with a reason a human can act on
(and that a dead-letter queue can store), never an exception that fails a whole Kinesis
batch. Errors are therefore returned as data. The core is pure: the clock is injected
(``now``), nothing is logged or read from the environment.

Two layers:

* *structure* (:func:`parse_reading`): UTF-8, JSON, the pydantic model;
* *physics* (:func:`check_sanity` for one model, :func:`sanity_mask` for a columnar
  :class:`ReadingBatch`): a plausible range for EVERY field (powers, current, voltage,
  energy per interval, the interval itself, sub-meters not above the total) and for the
  timestamp (not before :attr:`SanityLimits.min_timestamp`, not after the clock).

JSON text is decoded with :func:`loads_json`, which refuses duplicate keys in any object
(``{"household_id": "../x", "household_id": "h1"}`` is malformed, not "the last wins").

The physical rules are written once, vectorised, in :data:`_RULES`; ``check_sanity`` runs
them on a one-row batch, so both entry points agree by construction (and a test checks it).

Example:
    >>> import datetime as dt
    >>> now = dt.datetime(2007, 4, 1, tzinfo=dt.UTC)
    >>> validate_reading(b'{"household_id": "uci-sceaux", "timestamp": "2007-04-01T00:00:00Z",'
    ...                  b' "global_active_power_kw": 3.48, "voltage_v": 10000}', now=now)
    Rejection(code='implausible_voltage', reason='voltage_v = 10000.0 V is outside the \
plausible range 80.0-300.0 V', field='voltage_v')
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from shared.batch import ReadingBatch, datetime_to_us
from shared.schema import MEASUREMENT_FIELDS, MeterReading

__all__ = [
    "DEFAULT_LIMITS",
    "DuplicateKeys",
    "Rejection",
    "SanityLimits",
    "check_sanity",
    "duplicate_key_rejection",
    "loads_json",
    "parse_reading",
    "rejection_from_validation_error",
    "sanity_mask",
    "validate_reading",
]

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Rejection:
    """Why a record was refused.

    ``code`` is a short stable string for metrics and tests (``malformed_json``,
    ``wrong_type``, ``missing_field``, ``unknown_field``, ``not_finite``,
    ``negative_power``, ``negative_energy``, ``negative_current``, ``bad_interval``,
    ``implausible_power``, ``implausible_voltage``, ``submetering_exceeds_total``,
    ``implausible_current``, ``implausible_timestamp``,
    ``future_timestamp``, ``naive_timestamp``, ``bad_timestamp``, ``bad_household_id``,
    ``bad_encoding``, ``unsupported_schema_version``); ``reason`` is a sentence naming the
    field and the value; ``field`` is the offending field, if one.
    """

    code: str
    reason: str
    field: str | None = None


@dataclass(frozen=True)
class SanityLimits:
    """Plausible ranges of every field of a household meter reading.

    Set by measurement on the real data in ``shared/data`` (slow tests in ``tests/shared``
    re-measure them): the full UCI file (2,049,280 complete minutes of a house in Sceaux)
    and the London half-hourly file (1,674,718 readings of 100 households, 2013). None of
    their rows is rejected; every limit leaves a wide margin above the measured maximum,
    because the fleet holds bigger houses than these, and sits where a value can only be
    a unit error, a bug or an attack.

    =========================  =================  ==========================================
    limit                      default            measured maximum (source)
    =========================  =================  ==========================================
    ``max_active_power_kw``    100 kW             11.122 kW (UCI); 13.056 kW mean over a
                                                  half-hour (London, 6.528 kWh / 30 min)
    ``max_reactive_power_kw``  100 kvar           1.390 kvar (UCI)
    ``max_intensity_a``        500 A              48.4 A (UCI)
    ``min/max_voltage_v``      80-300 V           223.2-254.15 V (UCI)
    energy per interval        mean power         6.528 kWh per 1,800 s (London)
                               <= 100 kW
    ``min/max_interval_s``     1 s - 86,400 s     60 s (UCI), 1,800 s (London)
    sub-meters                 <= interval energy 88 / 80 / 31 Wh per minute (UCI)
                               + 3 Wh
    ``min_timestamp``          1990-01-01Z        earliest 2006-12-16 (UCI), 2011-11-23
                                                  (London daily)
    ``max_timestamp``          2200-01-01Z        and never past the receiver's clock
                                                  + ``max_future_skew_s``
    =========================  =================  ==========================================

    * ``max_active_power_kw = 100``: a residential connection is at most a few tens of kVA
      (France: 36 kVA). Beyond that it is a unit error (W sent as kW). ``energy_kwh`` must
      imply a mean power (``energy * 3600 / interval_s``) within the same limit.
    * ``max_reactive_power_kw = 100``: reactive power is bounded by the same connection's
      apparent power.
    * ``max_intensity_a = 500``: 100 kW at 230 V draws 435 A on one phase.
    * ``min_voltage_v = 80``, ``max_voltage_v = 300``: nominal 230 V. 0 V (sensor down)
      and 10,000 V (mV or a bug) are rejected.
    * ``min_interval_s = 1``, ``max_interval_s = 86400``: meters report from per-second to
      daily; a longer "interval" makes power and coverage meaningless, a shorter one is a
      unit error (ms sent as s).
    * ``min_timestamp = 1990-01-01``: no smart meter of the fleet reported earlier; 0
      (1970, an unset clock) and year 1 (a default value) are bugs, and year 1 broke the
      monthly forecast. ``max_timestamp = 2200-01-01`` is the ceiling consumers apply
      (they re-check without the clock); with it every derived date (a month, a forecast
      horizon) stays inside what a ``datetime`` and the wire models can hold.
    * ``max_future_skew_s = 300``: meter clocks drift; five minutes ahead of the
      receiver's clock is tolerated, more is a wrong clock or time zone.
    * ``default_interval_s = 60``: a reading with power but no ``interval_s`` is a UCI-style
      minute average, so its energy is ``P * 60 s``.
    * ``submetering_tolerance_wh = 3.0``: sub-meters count whole Wh (every UCI value is an
      integer), and a pulse counter can report a Wh that was mostly consumed in the previous
      interval, so each of the three may be up to 1 Wh ahead of the interval's true energy.
      Measured on the full UCI file: sub_metering_1+2+3 exceeds ``P * 60 s`` by more
      than ``P``'s 3-decimal rounding (0.0083 Wh) in 1,050 of 2,049,280 complete rows, by
      at most 2.400 Wh (33 rows above 1 Wh, 2 above 2 Wh, none above 3 Wh). So 3 Wh (one
      pulse per sub-meter) accepts all of them with 0.6 Wh to spare; a smaller value
      (e.g. 2.3) would reject real readings. A larger excess is rejected.
    """

    max_active_power_kw: float = 100.0
    min_voltage_v: float = 80.0
    max_voltage_v: float = 300.0
    max_future_skew_s: float = 300.0
    default_interval_s: float = 60.0
    submetering_tolerance_wh: float = 3.0
    max_reactive_power_kw: float = 100.0
    max_intensity_a: float = 500.0
    min_interval_s: float = 1.0
    max_interval_s: float = 86_400.0
    min_timestamp: dt.datetime = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
    max_timestamp: dt.datetime = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)

    def __post_init__(self) -> None:
        if not 0 <= self.min_voltage_v < self.max_voltage_v:
            raise ValueError("need 0 <= min_voltage_v < max_voltage_v")
        if min(self.max_active_power_kw, self.max_reactive_power_kw, self.max_intensity_a) <= 0:
            raise ValueError("power and current limits must be positive")
        if not 0 < self.min_interval_s <= self.default_interval_s <= self.max_interval_s:
            raise ValueError("need 0 < min_interval_s <= default_interval_s <= max_interval_s")
        if min(self.max_future_skew_s, self.submetering_tolerance_wh) < 0:
            raise ValueError("max_future_skew_s and submetering_tolerance_wh must be >= 0")
        if self.min_timestamp.tzinfo is None or self.max_timestamp.tzinfo is None:
            raise ValueError("min_timestamp and max_timestamp must be timezone-aware")
        if not self.min_timestamp < self.max_timestamp:
            raise ValueError("need min_timestamp < max_timestamp")

    @property
    def min_timestamp_us(self) -> int:
        """:attr:`min_timestamp` in microseconds since the Unix epoch."""
        return datetime_to_us(self.min_timestamp)

    @property
    def max_timestamp_us(self) -> int:
        """:attr:`max_timestamp` in microseconds since the Unix epoch."""
        return datetime_to_us(self.max_timestamp)


DEFAULT_LIMITS: Final = SanityLimits()

# --------------------------------------------------------------------------- structure

_MAX_SHOWN_INPUT: Final = 80


def _shown(value: Any) -> str:
    """A bounded repr, so a 1 MB garbage field does not become a 1 MB reason."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN_INPUT else text[: _MAX_SHOWN_INPUT - 3] + "..."


_CODE_BY_ERROR_TYPE: Final = {
    "missing": "missing_field",
    "missing_measurement": "missing_field",
    "extra_forbidden": "unknown_field",
    "finite_number": "not_finite",
    "naive_timestamp": "naive_timestamp",
    "timezone_aware": "naive_timestamp",
}


def rejection_from_validation_error(error: ValidationError) -> Rejection:
    """The first pydantic error as a :class:`Rejection` (other errors are counted)."""
    errors = error.errors(include_url=False)
    first = errors[0]
    kind = first["type"]
    # The model-level "no consumption" error has no location; name the field the batch
    # check names for the same problem.
    field = ".".join(str(part) for part in first["loc"]) or (
        "global_active_power_kw" if kind == "missing_measurement" else None
    )
    if field == "household_id" and kind != "missing":
        code = "bad_household_id"
    elif field == "schema_version" and kind in ("literal_error", "unsupported_schema_version"):
        code = "unsupported_schema_version"
    elif kind.startswith("datetime"):
        code = "bad_timestamp"
    else:
        code = _CODE_BY_ERROR_TYPE.get(kind, "wrong_type")
    if kind in ("missing", "missing_measurement"):
        reason = f"{field}: field required" if kind == "missing" else first["msg"]
    elif kind == "extra_forbidden":
        reason = f"unknown field {field!r} (value {_shown(first['input'])})"
    else:
        reason = f"{field}: {first['msg']} (got {_shown(first['input'])})"
    if len(errors) > 1:
        reason += f" (+{len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return Rejection(code, reason, field)


class DuplicateKeys(dict[str, Any]):
    """A decoded JSON object that repeated a key (here, or in an object nested in it).

    :func:`loads_json` returns it instead of raising, so a list of readings can refuse
    just the item that holds one; ``duplicates`` names the repeated keys. The values are
    those of the first occurrence, but nothing should read them: the object is malformed.
    """

    duplicates: tuple[str, ...] = ()
    pairs: tuple[tuple[str, Any], ...] = ()

    def to_json(self) -> str:
        """The object as sent, every repeated key included (for the quarantine)."""
        return (
            "{"
            + ",".join(
                json.dumps(key)
                + ":"
                + (
                    v.to_json()
                    if isinstance(v, DuplicateKeys)
                    else json.dumps(v, separators=(",", ":"), allow_nan=True)
                )
                for key, v in self.pairs
            )
            + "}"
        )


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a plain dict, or :class:`DuplicateKeys` (marked upward)."""
    seen: dict[str, Any] = {}
    repeated: list[str] = []
    for key, value in pairs:
        if key in seen:
            repeated.append(key)
        else:
            seen[key] = value
        if isinstance(value, DuplicateKeys):
            repeated.extend(f"{key}.{inner}" for inner in value.duplicates)
    if not repeated:
        return seen
    marked = DuplicateKeys(seen)
    marked.duplicates = tuple(dict.fromkeys(repeated))
    marked.pairs = tuple(pairs)
    return marked


def loads_json(text: str | bytes) -> Any:
    """``json.loads`` where an object with a repeated key becomes a :class:`DuplicateKeys`.

    Why: ``json.loads`` keeps the last of two equal keys silently, so
    ``{"household_id": "../victim", "household_id": "h1"}`` reads as ``h1`` here and
    possibly as ``../victim`` in another parser. The JSON number rule is the standard
    one (a number is a number); what a number *means* for a field is the field's rule
    (a timestamp number is Unix seconds, see :mod:`shared.schema`).
    """
    return json.loads(text, object_pairs_hook=_object_pairs)


def duplicate_key_rejection(value: DuplicateKeys, what: str = "a reading") -> Rejection:
    """The rejection of a JSON object that repeats a key."""
    names = ", ".join(repr(name[:40]) for name in value.duplicates[:5])
    first = value.duplicates[0].split(".", 1)[0][:40] if value.duplicates else None
    return Rejection(
        "malformed_json",
        f"{what} repeats the key(s) {names}; each key may appear once in a JSON object "
        "(which copy is meant cannot be known)",
        first,
    )


def parse_reading(
    raw: bytes | bytearray | memoryview | str | Mapping[str, Any],
) -> MeterReading | Rejection:
    """Structural validation only: UTF-8, JSON object (no repeated key), the model."""
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejection("bad_encoding", f"record is not valid UTF-8: {exc}")
    if isinstance(raw, str):
        try:
            raw = loads_json(raw)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            return Rejection("malformed_json", f"record is not valid JSON: {_shown(exc)}")
    if not isinstance(raw, Mapping):
        return Rejection("wrong_type", f"a reading must be a JSON object, got {type(raw).__name__}")
    if isinstance(raw, DuplicateKeys):
        return duplicate_key_rejection(raw)
    try:
        return MeterReading.model_validate(dict(raw))
    except ValidationError as exc:
        return rejection_from_validation_error(exc)


def validate_reading(
    raw: bytes | bytearray | memoryview | str | Mapping[str, Any],
    *,
    now: dt.datetime,
    limits: SanityLimits = DEFAULT_LIMITS,
) -> MeterReading | Rejection:
    """Structure then physics: the model, or the first reason to refuse the record.

    ``now`` is the receiver's clock (aware), injected so the function stays pure.
    """
    reading = parse_reading(raw)
    if isinstance(reading, Rejection):
        return reading
    return check_sanity(reading, now=now, limits=limits) or reading


# ----------------------------------------------------------------------------- physics


@dataclass(frozen=True)
class _Frame:
    """What a rule looks at: the batch's columns plus the injected clock and limits."""

    columns: Mapping[str, npt.NDArray[np.float64]]
    timestamps_us: npt.NDArray[np.int64]
    now_us: int
    limits: SanityLimits

    def row(self, index: int) -> _Frame:
        """A one-row frame, so explanations cost O(1) however large the batch."""
        return _Frame(
            {name: column[index : index + 1] for name, column in self.columns.items()},
            self.timestamps_us[index : index + 1],
            self.now_us,
            self.limits,
        )

    def value(self, name: str) -> float:
        """The value of a one-row frame."""
        return float(self.columns[name][0])


@dataclass(frozen=True)
class _Rule:
    """One sanity rule: a vectorised failure mask and an explanation of a one-row frame."""

    code: str
    field: str | None
    fails: Callable[[_Frame], BoolArray]
    explain: Callable[[_Frame], str]


_UNITS: Final = {"_kw": "kW", "_wh": "Wh", "_kwh": "kWh", "_a": "A", "_v": "V", "_s": "s"}


def _unit(name: str) -> str:
    return next(unit for suffix, unit in _UNITS.items() if name.endswith(suffix))


def _shown_value(frame: _Frame, name: str) -> str:
    return f"{name} = {frame.value(name)!r} {_unit(name)}"


def _not_finite_rule(name: str) -> _Rule:
    # NaN means "absent" in a batch; only a decoded record can carry an infinity.
    return _Rule(
        "not_finite",
        name,
        lambda f: np.isinf(f.columns[name]),
        lambda f: f"{_shown_value(f, name)} is not a finite number",
    )


def _negative_rule(name: str) -> _Rule:
    code = {"kW": "negative_power", "A": "negative_current"}.get(_unit(name), "negative_energy")
    return _Rule(
        code,
        name,
        lambda f: f.columns[name] < 0,
        lambda f: (
            f"{_shown_value(f, name)} is negative; a consumption meter reports non-negative values"
        ),
    )


def _has(frame: _Frame, name: str) -> BoolArray:
    return ~np.isnan(frame.columns[name])


def _interval_s(frame: _Frame) -> npt.NDArray[np.float64]:
    """Each row's interval: ``interval_s`` if sent, else the default (a minute)."""
    column = frame.columns["interval_s"]
    return np.where(_has(frame, "interval_s"), column, frame.limits.default_interval_s)


def _interval_energy_wh(frame: _Frame) -> npt.NDArray[np.float64]:
    """The interval's total active energy: ``energy_kwh`` if sent, else power x interval."""
    cols = frame.columns
    from_power = cols["global_active_power_kw"] * _interval_s(frame) / 3.6  # kW * s -> Wh
    return np.where(_has(frame, "energy_kwh"), cols["energy_kwh"] * 1000.0, from_power)


_SUBMETERS: Final = ("sub_metering_1_wh", "sub_metering_2_wh", "sub_metering_3_wh")


def _submeter_sum_wh(frame: _Frame) -> npt.NDArray[np.float64]:
    return np.nansum(np.stack([frame.columns[name] for name in _SUBMETERS]), axis=0)


def _submeters_exceed(frame: _Frame) -> BoolArray:
    any_submeter = np.logical_or.reduce([_has(frame, name) for name in _SUBMETERS])
    limit = _interval_energy_wh(frame) + frame.limits.submetering_tolerance_wh
    return any_submeter & (_submeter_sum_wh(frame) > limit)


def _explain_submeters(frame: _Frame) -> str:
    total = float(_submeter_sum_wh(frame)[0])
    energy = float(_interval_energy_wh(frame)[0])
    return (
        f"sub_metering_1+2+3 = {total!r} Wh is above the interval's total active energy "
        f"{energy:.4f} Wh (+{frame.limits.submetering_tolerance_wh} Wh tolerance)"
    )


def _future(frame: _Frame) -> BoolArray:
    skew_us = round(frame.limits.max_future_skew_s * 1_000_000)
    return frame.timestamps_us > frame.now_us + skew_us


def _explain_future(frame: _Frame) -> str:
    stamp = np.datetime64(int(frame.timestamps_us[0]), "us")
    now = np.datetime64(frame.now_us, "us")
    return (
        f"timestamp = {stamp}Z is more than {frame.limits.max_future_skew_s} s after now ({now}Z)"
    )


def _out_of_era(frame: _Frame) -> BoolArray:
    return (frame.timestamps_us < frame.limits.min_timestamp_us) | (
        frame.timestamps_us >= frame.limits.max_timestamp_us
    )


def _explain_out_of_era(frame: _Frame) -> str:
    stamp = np.datetime64(int(frame.timestamps_us[0]), "us")
    low, high = frame.limits.min_timestamp, frame.limits.max_timestamp
    return (
        f"timestamp = {stamp}Z is outside the plausible range "
        f"{low.isoformat()} .. {high.isoformat()} (an unset clock, or a unit error?)"
    )


_POWER, _REACTIVE, _CURRENT, _ENERGY, _INTERVAL, _VOLTAGE = (
    "global_active_power_kw",
    "global_reactive_power_kw",
    "global_intensity_a",
    "energy_kwh",
    "interval_s",
    "voltage_v",
)

_RULES: Final[tuple[_Rule, ...]] = (
    *(_not_finite_rule(name) for name in MEASUREMENT_FIELDS),
    _Rule(
        "missing_field",
        _POWER,
        lambda f: ~_has(f, _POWER) & ~(_has(f, _ENERGY) & _has(f, _INTERVAL)),
        lambda f: "a reading needs global_active_power_kw, or both energy_kwh and interval_s",
    ),
    *(_negative_rule(name) for name in MEASUREMENT_FIELDS if name not in (_VOLTAGE, _INTERVAL)),
    _Rule(
        "bad_interval",
        _INTERVAL,
        lambda f: f.columns[_INTERVAL] <= 0,
        lambda f: f"{_shown_value(f, _INTERVAL)} is not a positive duration",
    ),
    _Rule(
        "bad_interval",
        _INTERVAL,
        lambda f: (
            (f.columns[_INTERVAL] < f.limits.min_interval_s)
            | (f.columns[_INTERVAL] > f.limits.max_interval_s)
        ),
        lambda f: (
            f"{_shown_value(f, _INTERVAL)} is outside the plausible range "
            f"{f.limits.min_interval_s}-{f.limits.max_interval_s} s"
        ),
    ),
    _Rule(
        "implausible_power",
        _POWER,
        lambda f: f.columns[_POWER] > f.limits.max_active_power_kw,
        lambda f: (
            f"{_shown_value(f, _POWER)} is above the household limit "
            f"{f.limits.max_active_power_kw} kW"
        ),
    ),
    _Rule(
        "implausible_power",
        _ENERGY,
        # mean power = E * 3600 / interval; multiplied out to avoid dividing by zero. An
        # energy without interval is a default-interval reading, as everywhere else.
        lambda f: f.columns[_ENERGY] * 3600.0 > f.limits.max_active_power_kw * _interval_s(f),
        lambda f: (
            f"{_shown_value(f, _ENERGY)} over {float(_interval_s(f)[0])!r} s "
            f"means a mean power above the household limit {f.limits.max_active_power_kw} kW"
        ),
    ),
    _Rule(
        "implausible_power",
        _REACTIVE,
        lambda f: f.columns[_REACTIVE] > f.limits.max_reactive_power_kw,
        lambda f: (
            f"{_shown_value(f, _REACTIVE)} is above the household limit "
            f"{f.limits.max_reactive_power_kw} kvar"
        ),
    ),
    _Rule(
        "implausible_current",
        _CURRENT,
        lambda f: f.columns[_CURRENT] > f.limits.max_intensity_a,
        lambda f: (
            f"{_shown_value(f, _CURRENT)} is above the household limit {f.limits.max_intensity_a} A"
        ),
    ),
    _Rule(
        "implausible_voltage",
        _VOLTAGE,
        lambda f: (
            (f.columns[_VOLTAGE] < f.limits.min_voltage_v)
            | (f.columns[_VOLTAGE] > f.limits.max_voltage_v)
        ),
        lambda f: (
            f"{_shown_value(f, _VOLTAGE)} is outside the plausible range "
            f"{f.limits.min_voltage_v}-{f.limits.max_voltage_v} V"
        ),
    ),
    _Rule("submetering_exceeds_total", "sub_metering_1_wh", _submeters_exceed, _explain_submeters),
    _Rule("implausible_timestamp", "timestamp", _out_of_era, _explain_out_of_era),
    _Rule("future_timestamp", "timestamp", _future, _explain_future),
)
"""Ordered: a row is reported under the first rule it breaks."""


def sanity_mask(
    batch: ReadingBatch, *, now_us: int, limits: SanityLimits = DEFAULT_LIMITS
) -> tuple[BoolArray, list[tuple[int, Rejection]]]:
    """Vectorised physical check of a batch: ``(ok, [(row, rejection), ...])``.

    ``ok[i]`` is True for a sane row; every other row appears once in the list (sorted by
    row) with the first rule it breaks. Also catches what the model would refuse in a
    decoded record (infinities, no power and no energy). Costs a few array passes, so two
    million rows take well under a second.
    """
    frame = _Frame(batch.columns, batch.timestamps_us, int(now_us), limits)
    ok = np.ones(len(batch), dtype=bool)
    rejected: list[tuple[int, Rejection]] = []
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf arithmetic is expected
        for rule in _RULES:
            bad = rule.fails(frame) & ok
            if bad.any():
                rejected.extend(
                    (int(i), Rejection(rule.code, rule.explain(frame.row(int(i))), rule.field))
                    for i in np.flatnonzero(bad)
                )
                ok &= ~bad
    rejected.sort(key=lambda item: item[0])
    return ok, rejected


def check_sanity(
    reading: MeterReading, *, now: dt.datetime, limits: SanityLimits = DEFAULT_LIMITS
) -> Rejection | None:
    """Physical check of one model; ``None`` when sane. Same rules as :func:`sanity_mask`."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    _, rejected = sanity_mask(
        ReadingBatch.from_readings([reading]), now_us=datetime_to_us(now), limits=limits
    )
    return rejected[0][1] if rejected else None
