"""The streaming step: window states + decoded batches in, new states + forecasts out.

Why this shape: a Lambda batch (or a KCL/faust poll) holds records of hundreds of
households; the model costs ~65 ms for one window but ~23 ms for 512 (LiteRT), so the
step gathers the windows that completed in *every* household of the batch and calls the
model once (:func:`step`, or :func:`prepare` -> any backend -> :func:`finish`).

Pure: no I/O, no clock, no TensorFlow; the model is the
:class:`services.realtime.ports.ForecastModel` port, passed in.

Per household, in one batch:

1. records already applied (stream position <= ``state.position``) are skipped: a
   redelivered batch changes nothing and forecasts nothing (a reading published twice in
   different records is dropped by the window state's slot bitmap instead);
2. the meter decides the path: all the model's measurements -> the multivariate model;
   otherwise the univariate window (:mod:`services.realtime.core.fallback`), forecast by
   the global energy model when ``StreamConfig.energy_model`` is set (one batched call
   for every such window of the batch, :mod:`services.realtime.core.energy`), with
   seasonal naive as the last resort, marked in ``fallback_reason``. A household
   switching path, or a state built for another model shape, starts a fresh window
   (reported in ``resets``);
3. readings go into the window state (:mod:`services.realtime.core.window`); every
   completed step with a complete window is forecast; the others are reported, with the
   reason, in ``skipped``;
4. the bin each step completed goes through the anomaly detector
   (:mod:`services.realtime.core.anomaly`: the household's usual consumption for that
   time of day, kept in the state; independent of the model), whose verdict travels with
   the step's forecast; the newest forecast is kept in the state.

A forecast's identity is ``(household_id, issued_at)``, ``issued_at`` being the start of
its first step (event time). The same states and records always give the same forecasts,
so a batch retried after a failure re-emits identical documents, and consumers upsert on
that identity.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from services.realtime.core.anomaly import KINDS, AnomalyConfig, AnomalyState, Verdicts, detect
from services.realtime.core.energy import energy_forecast, rows_of
from services.realtime.core.fallback import SeasonalNaive, missing_reason, power_kw
from services.realtime.core.features import (
    CALENDAR,
    DEFAULT_MAX_GAP_S,
    MEASUREMENTS,
    TARGET,
    calendar_features,
)
from services.realtime.core.spec import ModelSpec
from services.realtime.core.window import (
    DEFAULT_MAX_CATCH_UP_STEPS,
    US_PER_S,
    Advanced,
    Mode,
    Rows,
    WindowConfig,
    WindowState,
    advance,
)
from services.realtime.ports import ForecastModel
from shared.batch import ReadingBatch
from shared.schema import SCHEMA_VERSION, Forecast

__all__ = [
    "Delivery",
    "ForecastDocument",
    "ForecastRows",
    "NoForecast",
    "Prepared",
    "StepResult",
    "StepStats",
    "StreamConfig",
    "finish",
    "prepare",
    "step",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class StreamConfig:
    """The model's shape (its :class:`ModelSpec`) and the streaming rules around it."""

    spec: ModelSpec
    max_gap_s: int = DEFAULT_MAX_GAP_S
    max_catch_up_steps: int = DEFAULT_MAX_CATCH_UP_STEPS
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)
    fallback_history_days: int = 7
    #: The global model for energy-only meters (:mod:`services.realtime.core.energy`);
    #: ``None``: they get seasonal naive, as before.
    energy_model: ForecastModel | None = field(default=None, compare=False, hash=False)
    _fallbacks: dict[int, tuple[SeasonalNaive, WindowConfig]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @functools.cached_property
    def model_window(self) -> WindowConfig:
        """Window of the multivariate model: its measurements, in model order."""
        return WindowConfig(
            resolution_s=self.spec.resolution_s,
            input_steps=self.spec.input_steps,
            measurements=tuple(f for f in self.spec.features if f in MEASUREMENTS),
            target=self.spec.target,
            max_gap_s=self.max_gap_s,
            max_catch_up_steps=self.max_catch_up_steps,
        )

    def fallback(self, interval_s: int) -> tuple[SeasonalNaive, WindowConfig]:
        """The fallback model and its window (target only) for a meter interval."""
        if interval_s in self._fallbacks:
            return self._fallbacks[interval_s]
        model = SeasonalNaive.for_meter(
            self.spec.resolution_s,
            self.spec.horizon_steps,
            self.spec.quantiles,
            interval_s,
            history_days=self.fallback_history_days,
        )
        window = WindowConfig(
            resolution_s=model.resolution_s,
            input_steps=model.input_steps,
            measurements=(TARGET,),
            target=TARGET,
            max_gap_s=self.max_gap_s,
            max_catch_up_steps=self.max_catch_up_steps,
        )
        self._fallbacks[interval_s] = (model, window)
        return model, window

    @functools.cached_property
    def _feature_sources(self) -> list[tuple[bool, int]]:
        measured = self.model_window.measurements
        return [
            (True, measured.index(f)) if f in measured else (False, CALENDAR.index(f))
            for f in self.spec.features
        ]

    def features(self, windows: FloatArray, step_bins: IntArray) -> npt.NDArray[np.float32]:
        """Model input ``(count, input_steps, features)``: measurements + calendar."""
        n = self.spec.input_steps
        res_us = self.spec.resolution_s * US_PER_S
        bins = step_bins[:, None] - n + np.arange(n)
        low, span = (int(bins.min()), int(bins.max() - bins.min()) + 1) if bins.size else (0, 0)
        if 0 < span <= bins.size:
            # Households of one batch share most bins: compute each distinct bin once.
            calendar = calendar_features((low + np.arange(span)) * res_us)[bins - low]
        else:
            calendar = calendar_features(bins.ravel() * res_us).reshape(*bins.shape, len(CALENDAR))
        out = np.empty((len(step_bins), n, len(self.spec.features)), dtype=np.float32)
        for j, (measured, k) in enumerate(self._feature_sources):
            out[:, :, j] = windows[:, :, k] if measured else calendar[:, :, k]
        return out


@dataclass(frozen=True)
class Delivery:
    """One decoded record: one household's readings and its stream position.

    ``position`` is the record's Kinesis sequence number (increasing per household);
    0 means "unknown, always apply" (tests, replays without positions).
    """

    batch: ReadingBatch
    position: int = 0


@dataclass(frozen=True)
class NoForecast:
    """Steps of a household that got no forecast, and why (one entry per reason)."""

    household_id: str
    code: str
    reason: str
    steps: int
    first_us: int
    last_us: int


@dataclass(frozen=True)
class ForecastDocument:
    """A serialised :class:`Forecast`, with its identity (household, issued µs)."""

    household_id: str
    issued_us: int
    data: bytes


@dataclass(frozen=True, eq=False)
class ForecastRows:
    """Forecasts of one kind (same model, resolution, horizon) as columns.

    ``points[i, k]`` is ``(lower, value, upper)`` kW of step ``k`` of forecast ``i``.
    Kept columnar because building pydantic models costs more than the LiteRT call; they
    are built at the edge (:meth:`to_forecasts`, :meth:`documents`).
    """

    household_ids: tuple[str, ...]
    issued_us: IntArray
    resolution_s: int
    points: FloatArray
    anomaly_score: FloatArray
    anomaly: npt.NDArray[np.bool_]
    model_version: str
    fallback_reason: tuple[str | None, ...]
    #: The anomaly detector's verdicts, row for row (kind, size, duration); ``None``
    #: leaves those optional fields out of the documents.
    verdicts: Verdicts | None = None
    #: Per-forecast model versions when they differ (energy meters: model or last resort).
    model_versions: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.household_ids)

    def _dicts(self) -> Iterator[tuple[int, dict[str, Any]]]:
        horizon = self.points.shape[1]
        first_s = self.issued_us // US_PER_S
        stamps = np.datetime_as_string(
            (first_s[:, None] + np.arange(horizon) * self.resolution_s).astype("datetime64[s]"),
            unit="s",
        )
        points = self.points.tolist()
        expected, details = self._anomaly_details()
        for i, household in enumerate(self.household_ids):
            row = [
                {
                    "schema_version": SCHEMA_VERSION,
                    "timestamp": f"{stamp}Z",
                    "value_kw": value,
                    "lower_kw": lower,
                    "upper_kw": upper,
                }
                for stamp, (lower, value, upper) in zip(stamps[i], points[i], strict=True)
            ]
            yield (
                i,
                {
                    "schema_version": SCHEMA_VERSION,
                    "household_id": household,
                    "issued_at": f"{stamps[i][0]}Z",
                    "resolution_s": self.resolution_s,
                    "points": row,
                    "model_version": (
                        self.model_versions[i] if self.model_versions else self.model_version
                    ),
                    "anomaly_score": float(self.anomaly_score[i]),
                    "anomaly": bool(self.anomaly[i]),
                    "fallback_reason": self.fallback_reason[i],
                    "expected_kw": expected[i],
                    **details.get(i, {}),
                },
            )

    def _anomaly_details(self) -> tuple[list[float | None], dict[int, dict[str, Any]]]:
        """``expected_kw`` of each row, and the anomaly fields of the flagged rows."""
        v = self.verdicts
        if v is None:
            return [None] * len(self.household_ids), {}
        expected = np.where(np.isnan(v.expected_kw), None, v.expected_kw).tolist()
        flagged = np.flatnonzero(v.flag)
        start = np.datetime_as_string(
            (v.start_us[flagged] // US_PER_S).astype("datetime64[s]"), "s"
        )
        detail = {
            i: {
                "anomaly_kind": KINDS[k],
                "anomaly_kwh": kwh,
                "anomaly_duration_s": duration,
                "anomaly_start": f"{stamp}Z",
            }
            for i, k, kwh, duration, stamp in zip(
                flagged.tolist(),
                v.kind[flagged].tolist(),
                v.kwh[flagged].tolist(),
                v.duration_s[flagged].tolist(),
                start,
                strict=True,
            )
        }
        return expected, detail

    def documents(self) -> list[ForecastDocument]:
        """JSON ``Forecast`` documents (what ``Forecast.model_dump_json`` would parse from)."""
        return [
            ForecastDocument(
                doc["household_id"],
                int(self.issued_us[i]),
                json.dumps(doc, separators=(",", ":"), allow_nan=False).encode(),
            )
            for i, doc in self._dicts()
        ]

    def to_forecasts(self) -> list[Forecast]:
        """Validated wire models (slower; for tests and low-volume consumers)."""
        return [Forecast.model_validate(doc) for _, doc in self._dicts()]


@dataclass
class StepStats:
    """Counters of one step, for metrics and logs."""

    records: int = 0
    duplicate_records: int = 0
    households: int = 0
    readings: int = 0
    duplicate_readings: int = 0
    late_ignored: int = 0
    superseded_steps: int = 0
    model_windows: int = 0
    energy_model_windows: int = 0
    fallback_windows: int = 0
    forecasts: int = 0
    anomalies: int = 0
    skipped_steps: int = 0


@dataclass(frozen=True)
class StepResult:
    """New states (only of households that changed), forecasts, and what was not done."""

    states: dict[str, WindowState]
    forecasts: list[ForecastRows]
    skipped: list[NoForecast]
    resets: list[tuple[str, str]]
    stats: StepStats

    def documents(self) -> list[ForecastDocument]:
        """Every forecast as JSON, per household in time order (the publishing order)."""
        docs = [d for rows in self.forecasts for d in rows.documents()]
        order = {h: i for i, h in enumerate(self.states)}
        docs.sort(key=lambda d: (order.get(d.household_id, len(order)), d.issued_us))
        return docs

    def to_forecasts(self) -> list[Forecast]:
        return [f for rows in self.forecasts for f in rows.to_forecasts()]


# ------------------------------------------------------------------------------ the step


@dataclass(frozen=True, eq=False)
class _Group:
    """Households on the same window kind, advanced together."""

    mode: Mode
    window: WindowConfig
    fallback: SeasonalNaive | None
    households: list[str]
    advanced: Advanced
    positions: list[int]
    valid: npt.NDArray[np.bool_]  # steps with a complete window (model groups)


@dataclass(frozen=True, eq=False)
class Prepared:
    """Everything between :func:`prepare` and :func:`finish`.

    ``model_inputs`` are the raw (unscaled) feature windows of every household of the
    batch, for ONE call of :meth:`ForecastModel.predict`.
    """

    config: StreamConfig
    model_inputs: npt.NDArray[np.float32]
    groups: list[_Group]
    order: list[str]
    resets: list[tuple[str, str]]
    stats: StepStats

    @property
    def model_households(self) -> list[str]:
        """Households of the groups that need the model's predictions."""
        return [h for g in self.groups if g.mode == "model" and g.valid.any() for h in g.households]


@dataclass(frozen=True, eq=False)
class _Readings:
    """Every new reading of a batch as columns, households one after another.

    Built once per step, so that the per-household work (which measurements a meter
    sends, its rows for :func:`advance`) is a few vectorised passes, not numpy calls per
    record.
    """

    timestamps_us: IntArray
    batches: Sequence[ReadingBatch]
    counts: IntArray  # readings per household
    starts: IntArray
    _columns: dict[str, FloatArray] = field(default_factory=dict)

    @classmethod
    def of(cls, per_household: Sequence[Sequence[ReadingBatch]]) -> _Readings:
        batches = [b for household in per_household for b in household]
        sizes = np.array([b.timestamps_us.shape[0] for b in batches], dtype=np.int64)
        owners = np.repeat(np.arange(len(per_household)), [len(h) for h in per_household])
        counts = np.bincount(owners, weights=sizes, minlength=len(per_household)).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        stamps = (
            np.concatenate([b.timestamps_us for b in batches]) if batches else np.empty(0, np.int64)
        )
        return cls(stamps, batches, counts, starts)

    def column(self, name: str) -> FloatArray:
        """One measurement of every reading (concatenated once, when first needed)."""
        if name not in self._columns:
            self._columns[name] = np.concatenate([b.columns[name] for b in self.batches])
        return self._columns[name]

    def present(self, names: Sequence[str]) -> npt.NDArray[np.bool_]:
        """``(households, names)``: whether the household sent each measurement at all."""
        if not len(self.counts):
            return np.zeros((0, len(names)), dtype=bool)
        return np.column_stack(
            [np.add.reduceat(~np.isnan(self.column(name)), self.starts) > 0 for name in names]
        )

    def interval_s(self, household: int) -> int:
        """The meter's reading interval (``interval_s`` sent, else a minute)."""
        a = int(self.starts[household])
        values = self.column("interval_s")[a : a + int(self.counts[household])]
        values = values[~np.isnan(values)]
        return round(float(np.median(values))) if len(values) else 60

    def intervals_s(self) -> list[int]:
        """:meth:`interval_s` of every household, vectorised: a meter sending one interval
        (the usual case) needs no median."""
        if not len(self.counts):
            return []
        values = self.column("interval_s")
        known = ~np.isnan(values)
        low = np.minimum.reduceat(np.where(known, values, np.inf), self.starts)
        high = np.maximum.reduceat(np.where(known, values, -np.inf), self.starts)
        out = [round(v) if np.isfinite(v) else 60 for v in low.tolist()]
        for i in np.flatnonzero(np.isfinite(low) & (low != high)).tolist():
            out[i] = self.interval_s(i)
        return out

    def rows(self, households: Sequence[int], measurements: Sequence[str] | None) -> Rows:
        """The rows of ``households`` (numbered 0.. in that order) for :func:`advance`:
        the named measurements, or (``None``) the active power alone, measured or derived
        from the interval's energy (the fallback's input)."""
        chosen = np.zeros(len(self.counts), dtype=bool)
        chosen[list(households)] = True
        mask = np.repeat(chosen, self.counts)
        index = np.repeat(np.arange(len(households), dtype=np.int64), self.counts[list(households)])
        if measurements is None:
            power, energy, interval = (
                self.column(n)[mask] for n in (TARGET, "energy_kwh", "interval_s")
            )
            values = power_kw(power, energy, interval)[:, None]
        else:
            values = np.column_stack([self.column(m)[mask] for m in measurements])
        return Rows(index, self.timestamps_us[mask], values)


@dataclass
class _Pending:
    state: WindowState | None
    batches: list[ReadingBatch] = field(default_factory=list)
    position: int = 0


def prepare(
    states: Mapping[str, WindowState | None],
    deliveries: Sequence[Delivery],
    config: StreamConfig,
) -> Prepared:
    """Apply the deliveries to the states; collect every window ready for the model."""
    stats = StepStats(records=len(deliveries))
    pending: dict[str, _Pending] = {}
    for delivery in deliveries:
        household = delivery.batch.household_id
        entry = pending.get(household)
        if entry is None:
            entry = pending[household] = _Pending(states.get(household))
        applied = max(entry.position, entry.state.position if entry.state else 0)
        if delivery.position and delivery.position <= applied:
            stats.duplicate_records += 1
            continue
        entry.position = max(entry.position, delivery.position)
        if delivery.batch.timestamps_us.shape[0]:
            entry.batches.append(delivery.batch)

    active = [(h, e) for h, e in pending.items() if e.batches]
    readings = _Readings.of([e.batches for _, e in active])
    required = config.model_window.measurements
    present = readings.present(required)  # (households, measurements)
    complete = np.asarray(present.all(axis=1), dtype=bool).tolist()

    # groups keyed by the window config's identity: hashing the dataclass per household
    # costs more than the rest of this loop
    groups: dict[int, tuple[Mode, WindowConfig, list[int]]] = {}
    fallbacks: dict[WindowConfig, SeasonalNaive] = {}
    members: list[tuple[str, WindowState, _Pending]] = []
    resets: list[tuple[str, str]] = []
    model_window = config.model_window
    # per-household values of the univariate meters, computed in one pass each
    intervals = readings.intervals_s() if not all(complete) else []
    present_rows = [row.tobytes() for row in present] if not all(complete) else []
    reasons: dict[tuple[int, bytes], str] = {}
    for i, (household, entry) in enumerate(active):
        reason: str | None = None
        if complete[i]:
            mode: Mode = "model"
            window, interval = model_window, 60
        else:
            mode = "fallback"
            interval = intervals[i]
            fallback, window = config.fallback(interval)
            fallbacks[window] = fallback
            pattern = (interval, present_rows[i])
            reason = reasons.get(pattern)
            if reason is None:
                missing = [n for n, ok in zip(required, present[i], strict=True) if not ok]
                reason = reasons[pattern] = f"{missing_reason(missing)}; {fallback.version}"
        state = entry.state
        if state is None or state.mode != mode or not state.fits(window):
            if state is not None:
                why = "path changed" if state.mode != mode else "window shape changed"
                resets.append((household, f"{why}: now {mode} ({reason or 'all measurements'})"))
            state = WindowState.fresh(
                household,
                window,
                mode=mode,
                reading_interval_s=interval,
                position=state.position if state else 0,
                fallback_reason=reason,
            )
        elif state.fallback_reason != reason:
            state = state.replace(fallback_reason=reason)
        members.append((household, state, entry))
        group_key = id(window)
        if group_key not in groups:
            groups[group_key] = (mode, window, [])
        groups[group_key][2].append(i)

    built: list[_Group] = []
    inputs: list[npt.NDArray[np.float32]] = []
    for mode, window, indexes in groups.values():
        group = [members[i] for i in indexes]
        rows = readings.rows(indexes, window.measurements if mode == "model" else None)
        stats.readings += len(rows.timestamps_us)
        advanced = advance(window, [s for _, s, _ in group], rows)
        if mode == "model":
            valid = advanced.end_known & ~np.isnan(advanced.windows).any(axis=(1, 2))
            inputs.append(config.features(advanced.windows[valid], advanced.step_bins[valid]))
        else:
            valid = np.ones(len(advanced.step_bins), dtype=bool)
        built.append(
            _Group(
                mode=mode,
                window=window,
                fallback=fallbacks.get(window),
                households=[h for h, _, _ in group],
                advanced=advanced,
                positions=[max(e.position, s.position) for _, s, e in group],
                valid=valid,
            )
        )
    n, f = config.spec.input_steps, len(config.spec.features)
    model_inputs = np.concatenate(inputs) if inputs else np.empty((0, n, f), np.float32)
    stats.households = sum(len(g.households) for g in built)
    return Prepared(config, model_inputs, built, list(pending), resets, stats)


def finish(prepared: Prepared, predictions: npt.ArrayLike | None) -> StepResult:
    """Turn the model's output for ``prepared.model_inputs`` into forecasts and states.

    ``predictions=None`` means the model call failed: the households that needed it
    (:attr:`Prepared.model_households`) are left out of the result (no forecast, no new
    state), so their records can be retried; every other household is finished.
    """
    config, stats = prepared.config, prepared.stats
    if predictions is None:
        missing = {id(g) for g in prepared.groups if g.mode == "model" and g.valid.any()}
        predictions = np.empty((len(prepared.model_inputs), 0))
    else:
        missing = set()
        predictions = np.asarray(predictions, dtype=np.float64)
        if len(predictions) != len(prepared.model_inputs):
            raise ValueError(
                f"{len(predictions)} predictions for {len(prepared.model_inputs)} model windows"
            )
    states: dict[str, WindowState] = {}
    forecasts: list[ForecastRows] = []
    skipped: list[NoForecast] = []
    used = 0
    for group in prepared.groups:
        if id(group) in missing:
            continue
        adv = group.advanced
        count = len(adv.step_bins)
        row_reasons: Sequence[str | None] | None = None
        row_versions: Sequence[str] | None = None
        reasons: list[str | None]
        if group.mode == "fallback" and config.energy_model is not None:
            energy = energy_forecast(
                config.energy_model,
                adv.windows[:, :, 0],
                adv.step_bins,
                adv.end_known,
                group.window.resolution_s,
                history_days=config.fallback_history_days,
            )
            reasons = energy.skip_reasons
            group = _with_valid(group, energy.valid)
            quantiles = energy.quantiles[group.valid]
            horizon, resolution_s = energy.horizon_steps, group.window.resolution_s
            version = config.energy_model.spec.version
            row_reasons, row_versions = energy.fallback_reasons, energy.versions
            last_resort = sum(v != version for v in rows_of(row_versions, group.valid))
            stats.energy_model_windows += len(quantiles) - last_resort
            stats.fallback_windows += last_resort
        elif group.mode == "model":
            quantiles = predictions[used : used + int(group.valid.sum())]
            used += len(quantiles)
            horizon, resolution_s = config.spec.horizon_steps, config.spec.resolution_s
            version = config.spec.version
            reasons = [None] * count
            stats.model_windows += len(quantiles)
        else:
            fallback = group.fallback
            assert fallback is not None  # fallback groups always carry their model
            quantiles, reasons = fallback.predict(adv.windows[:, :, 0])
            reasons = [
                r if known or r else "fallback needs the last bin before the step (missing)"
                for r, known in zip(reasons, adv.end_known, strict=True)
            ]
            group = _with_valid(group, np.array([r is None for r in reasons], dtype=bool))
            quantiles = quantiles[group.valid]
            horizon, resolution_s = fallback.horizon_steps, fallback.resolution_s
            version = fallback.version
            stats.fallback_windows += len(quantiles)
        points = np.full((count, horizon, 3), np.nan)
        points[group.valid] = _intervals(quantiles)
        res_us = resolution_s * US_PER_S
        issued = adv.step_bins * res_us
        detector_states, verdicts = _detect(config.anomaly, group)
        flags = verdicts.flag
        keep = group.valid
        forecasts.append(
            ForecastRows(
                household_ids=tuple(group.households[h] for h in adv.step_household[keep]),
                issued_us=issued[keep],
                resolution_s=resolution_s,
                points=points[keep],
                anomaly_score=verdicts.score[keep],
                anomaly=flags[keep],
                model_version=version,
                fallback_reason=(
                    rows_of(row_reasons, keep)
                    if row_reasons is not None
                    else tuple(adv.before[h].fallback_reason for h in adv.step_household[keep])
                ),
                model_versions=(
                    tuple(v or version for v in rows_of(row_versions, keep))
                    if row_versions is not None
                    else None
                ),
                verdicts=verdicts.take(keep),
            )
        )
        stats.forecasts += int(keep.sum())
        stats.anomalies += int(flags[keep].sum())
        stats.late_ignored += int(adv.late_ignored.sum())
        stats.duplicate_readings += int(adv.duplicates.sum())
        stats.superseded_steps += int(adv.superseded.sum())
        skipped.extend(_skipped(group, reasons, res_us))
        last = _last_valid(adv.step_household, keep, len(group.households))
        for h, household in enumerate(group.households):
            if last[h] >= 0:
                states[household] = adv.evolve(
                    h,
                    position=group.positions[h],
                    forecast=points[last[h]].copy(),
                    forecast_start_us=int(issued[last[h]]),
                    forecast_resolution_s=resolution_s,
                    anomaly=detector_states[h],
                )
            else:
                states[household] = adv.evolve(
                    h, position=group.positions[h], anomaly=detector_states[h]
                )
    stats.skipped_steps = sum(s.steps for s in skipped)
    ordered = {h: states[h] for h in prepared.order if h in states}
    return StepResult(ordered, forecasts, skipped, prepared.resets, stats)


def step(
    states: Mapping[str, WindowState | None],
    deliveries: Sequence[Delivery],
    model: ForecastModel,
    config: StreamConfig,
) -> StepResult:
    """:func:`prepare`, one batched ``model.predict`` for all households, :func:`finish`."""
    prepared = prepare(states, deliveries, config)
    if len(prepared.model_inputs):
        predictions = model.predict(prepared.model_inputs)
    else:
        spec = config.spec
        predictions = np.empty((0, spec.horizon_steps, len(spec.quantiles)))
    return finish(prepared, predictions)


# ------------------------------------------------------------------------------- helpers


def _with_valid(group: _Group, valid: npt.NDArray[np.bool_]) -> _Group:
    return _Group(
        group.mode,
        group.window,
        group.fallback,
        group.households,
        group.advanced,
        group.positions,
        valid,
    )


def _detect(config: AnomalyConfig, group: _Group) -> tuple[list[AnomalyState], Verdicts]:
    """Every bin the group's steps completed through the anomaly detector (model or not:
    it reads only the target's bin means), from each household's detector state."""
    adv = group.advanced
    resolution_s = group.window.resolution_s
    states = []
    for before in adv.before:
        state = before.anomaly
        if state is None or not state.fits(resolution_s, config):
            state = AnomalyState.fresh(resolution_s, config)
        states.append(state)
    return detect(config, states, adv.step_household, adv.step_bins - 1, adv.actuals)


def _intervals(quantiles: FloatArray) -> FloatArray:
    """``(count, steps, quantiles)`` -> ``(count, steps, 3)`` lower, value, upper in kW.

    Quantiles are sorted (a model may cross them) and clipped at 0 kW (a household meter
    does not export), so every point satisfies ``lower <= value <= upper``.
    """
    ordered = np.sort(np.maximum(quantiles, 0.0), axis=-1)
    middle = ordered.shape[-1] // 2
    return np.stack([ordered[..., 0], ordered[..., middle], ordered[..., -1]], axis=-1)


def _last_valid(household: IntArray, valid: npt.NDArray[np.bool_], count: int) -> IntArray:
    """Index of each household's newest step with a forecast, -1 if none."""
    last = np.full(count, -1, dtype=np.int64)
    rows = np.flatnonzero(valid)
    np.maximum.at(last, household[rows], rows)
    return last


def _skipped(group: _Group, reasons: Sequence[str | None], res_us: int) -> list[NoForecast]:
    """One entry per household and reason for the steps without a forecast."""
    adv = group.advanced
    bad = np.flatnonzero(~group.valid)
    if not len(bad):
        return []
    window = group.window
    n = window.input_steps
    found: dict[tuple[int, str], list[Any]] = {}
    for i in bad.tolist():
        h = int(adv.step_household[i])
        first = adv.changes[h]["first"]
        step_bin = int(adv.step_bins[i])
        if group.mode == "fallback":
            text = reasons[i] or "fallback: no forecast"
            code = "fallback_warming_up" if "warming" in text else "fallback_gap"
        elif first is not None and step_bin - n < first:
            code = "warming_up"
            text = (
                f"warming up: the window needs {n} bins ({n * window.resolution_s // 3600} h)"
                " since the household's first reading"
            )
        else:
            code = "gap"
            text = (
                f"the window holds missing bins after interpolating gaps of up to "
                f"{window.max_gap_s} s (longer gaps, and missing data at the window's end, "
                "are not filled)"
            )
        entry = found.get((h, code))
        if entry is None:
            found[(h, code)] = [text, 1, step_bin, step_bin]
        else:
            entry[1] += 1
            entry[3] = step_bin
    return [
        NoForecast(group.households[h], code, text, steps, first * res_us, last * res_us)
        for (h, code), (text, steps, first, last) in found.items()
    ]
