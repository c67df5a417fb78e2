"""The served fleet model: one network for every energy-only meter, behind ForecastModel.

Why a wrapper around :class:`~services.realtime.backends.LiteRtModel`: the network reads a
flat vector of normalised features (:mod:`.fleet_features`), not raw windows, and its
output is a correction to the 7-day same-slot median in units of the household's level.
:class:`FleetModel` takes the port's raw windows (kW + each bin's start), builds the
features, runs the one LiteRT wrapper on the whole batch, and returns kW quantiles with
the interval widths calibrated per horizon step on households left out of fitting.

A fleet bundle is a directory ``artifacts/fleet/<version>/``::

    model.tflite   the network (dynamic batch), input (batch, 1, features)
    model.keras    the same network (training, the naive benchmark)
    metadata.json  the network's ModelSpec (shapes; identity scaling)
    fleet.json     a FleetSpec: version, grid, horizon, calibration, bank holidays
    metrics.json   validation accuracy and the training run
    README.md      what it is, data attribution

TensorFlow-free: the Lambda imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, field_validator, model_validator

from services.realtime.backends import LiteRtModel
from services.realtime.core.spec import QUANTILES_DEFAULT, ModelSpec
from services.realtime.model.bundle import ARTIFACTS_DIR, LITERT_FILE, read_spec
from services.realtime.model.fleet_features import (
    DAY_BINS,
    FLEET_RESOLUTION_S,
    INPUT_BINS,
    england_bank_holidays,
    feature_count,
    fleet_features,
)

__all__ = [
    "FLEET_ARTIFACTS_DIR",
    "FLEET_FEATURES",
    "FLEET_FILE",
    "FleetModel",
    "FleetSpec",
    "household_widening",
    "inner_spec",
    "open_fleet_model",
    "read_fleet_spec",
    "shipped_fleet_bundle",
]

FLEET_FILE: Final = "fleet.json"
FLEET_ARTIFACTS_DIR: Final = ARTIFACTS_DIR / "fleet"
#: The port's window channels: average power of each bin, and the bin's start (UTC s).
FLEET_FEATURES: Final = ("global_active_power_kw", "bin_start_s")
FloatArray = npt.NDArray[np.float64]


class FleetSpec(BaseModel):
    """Identity, shape and calibration of a fleet model (the bundle's ``fleet.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(min_length=1)
    resolution_s: int = FLEET_RESOLUTION_S
    input_steps: int = INPUT_BINS
    horizon_steps: int = DAY_BINS
    quantiles: tuple[float, ...] = QUANTILES_DEFAULT
    features: int = Field(default_factory=feature_count)
    #: Conformal widening of the lower and upper gaps (median to outer quantile), one per
    #: horizon step (or one for every step), chosen on households left out of fitting so
    #: that each tail holds its nominal share.
    scale_low: tuple[PositiveFloat, ...] = (1.0,)
    scale_high: tuple[PositiveFloat, ...] = (1.0,)
    #: Per-household widening: each window's gaps are multiplied by
    #: ``(spread / mean raw gap) ** spread_power`` (its own 7-day noise against the
    #: network's band, clipped to [1/3, 3]) before the conformal scales; chosen on the
    #: calibration households (0 = off, what bundles without it mean).
    spread_power: float = Field(default=0.0, ge=0.0, le=2.0)
    #: Bank holidays the model was trained with (epoch days); serving adds the rules'.
    holidays: tuple[int, ...] = ()

    @field_validator("scale_low", "scale_high", mode="before")
    @classmethod
    def _one_for_every_step(cls, value: object) -> object:
        """A bundle written before per-step calibration has one number."""
        return (value,) if isinstance(value, int | float) else value

    @model_validator(mode="after")
    def _scales_fit_the_horizon(self) -> FleetSpec:
        for name in ("scale_low", "scale_high"):
            if len(getattr(self, name)) not in (1, self.horizon_steps):
                raise ValueError(f"{name} needs 1 or {self.horizon_steps} values")
        return self

    def port_spec(self) -> ModelSpec:
        """The :class:`ModelSpec` of the port: raw windows ``(n, 336, 2)`` in, kW out."""
        return ModelSpec(
            version=self.version,
            resolution_s=self.resolution_s,
            input_steps=self.input_steps,
            horizon_steps=self.horizon_steps,
            features=FLEET_FEATURES,
            target=FLEET_FEATURES[0],
            quantiles=self.quantiles,
            feature_mean=(0.0, 0.0),
            feature_std=(1.0, 1.0),
        )


def inner_spec(spec: FleetSpec) -> ModelSpec:
    """The network's own spec: one row of ``spec.features`` features, identity scaling."""
    names = tuple(f"f{i}" for i in range(spec.features))
    return ModelSpec(
        version=spec.version,
        resolution_s=spec.resolution_s,
        input_steps=1,
        horizon_steps=spec.horizon_steps,
        features=names,
        target=names[0],
        quantiles=spec.quantiles,
        feature_mean=(0.0,) * spec.features,
        feature_std=(1.0,) * spec.features,
    )


def household_widening(raw: FloatArray, spread: FloatArray | None, power: float) -> FloatArray:
    """Per-window factor ``(spread / mean raw gap) ** power`` clipped to [1/3, 3] (1 where
    ``power`` is 0 or the spread is unknown).

    >>> household_widening(np.tile([-0.1, 0.0, 0.1], (2, 48, 1)), np.array([0.4, 0.1]), 0.5)
    array([2., 1.])
    """
    ones = np.ones(len(raw))
    if not power or spread is None:
        return ones
    middle = raw.shape[-1] // 2
    gap = np.abs(raw - raw[..., middle : middle + 1]).sum(axis=-1).mean(axis=-1)
    gap = gap / max(raw.shape[-1] - 1, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.asarray(spread, dtype=np.float64) / np.maximum(gap, 1e-6)
    factor = np.clip(ratio, 1 / 9, 9) ** power
    return np.where(np.isfinite(factor), np.clip(factor, 1 / 3, 3), ones)


def read_fleet_spec(bundle: Path) -> FleetSpec:
    return FleetSpec.model_validate_json((Path(bundle) / FLEET_FILE).read_text())


def shipped_fleet_bundle(artifacts_dir: Path = FLEET_ARTIFACTS_DIR) -> Path | None:
    """The newest fleet bundle shipped in the repository, ``None`` if there is none."""
    bundles = sorted(p.parent for p in artifacts_dir.glob(f"*/{FLEET_FILE}"))
    return bundles[-1] if bundles else None


class FleetModel:
    """The fleet network behind the :class:`~services.realtime.ports.ForecastModel` port.

    ``predict(windows)``: ``(n, 336, 2)`` = kW (NaN = missing) and bin start (UTC s) of
    the last 7 days on the 30-minute grid -> ``(n, 48, 3)`` kW quantiles; a window with
    less than one day of known bins gets NaN (the caller's last resort serves it).
    """

    def __init__(self, network: LiteRtModel, spec: FleetSpec) -> None:
        self.fleet = spec
        self.spec = spec.port_spec()
        self._network = network
        years = range(1990, 2100)
        self.holidays = frozenset(spec.holidays) | england_bank_holidays(years)

    @classmethod
    def from_bundle(
        cls, bundle: Path, *, num_threads: int | None = 1, max_batch: int = 512
    ) -> FleetModel:
        bundle = Path(bundle)
        spec = read_fleet_spec(bundle)
        network = LiteRtModel(
            bundle / LITERT_FILE, read_spec(bundle), num_threads=num_threads, max_batch=max_batch
        )
        return cls(network, spec)

    def predict(self, windows: npt.ArrayLike) -> FloatArray:
        w = np.asarray(windows, dtype=np.float64)
        expected = (self.spec.input_steps, len(FLEET_FEATURES))
        if w.ndim != 3 or w.shape[1:] != expected:
            raise ValueError(
                f"windows must be (batch, {expected[0]}, {expected[1]}), got {w.shape}"
            )
        issue_s = w[:, -1, 1] + self.spec.resolution_s
        return self.forecast(w[:, :, 0], issue_s)

    def forecast(self, history_kw: npt.ArrayLike, issue_s: npt.ArrayLike) -> FloatArray:
        """History ``(n, 336)`` kW and forecast start (UTC s) -> ``(n, 48, q)`` kW."""
        inputs = fleet_features(history_kw, issue_s, self.holidays)
        n, q = len(inputs.x), len(self.spec.quantiles)
        out = np.full((n, self.spec.horizon_steps, q), np.nan)
        ok = np.flatnonzero(inputs.ok)
        if len(ok):
            raw = self._network.run_scaled(inputs.x[ok][:, None, :]).astype(np.float64)
            out[ok] = self.to_kw(raw, inputs.base[ok], inputs.level[ok], inputs.spread[ok])
        return out

    def to_kw(
        self,
        raw: FloatArray,
        base: FloatArray,
        level: FloatArray,
        spread: FloatArray | None = None,
    ) -> FloatArray:
        """Network output (normalised residual quantiles) -> calibrated kW quantiles;
        ``spread`` (:attr:`FleetInputs.spread`) widens or narrows each window's band."""
        steps, q = raw.shape[-2:]
        middle = q // 2
        center = raw[..., middle : middle + 1]
        scale = np.ones((steps, q))
        scale[:, :middle] = np.broadcast_to(self.fleet.scale_low, steps)[:, None]
        scale[:, middle + 1 :] = np.broadcast_to(self.fleet.scale_high, steps)[:, None]
        widen = household_widening(raw, spread, self.fleet.spread_power)
        calibrated = center + (raw - center) * scale * widen[:, None, None]
        return (calibrated + base[:, :, None]) * level[:, None, None]


def open_fleet_model(
    bundle: Path | None = None, *, num_threads: int | None = 1, max_batch: int = 512
) -> FleetModel | None:
    """The fleet model of ``bundle``, else of the newest shipped bundle, else ``None``
    (energy-only meters then get seasonal naive)."""
    bundle = bundle or shipped_fleet_bundle()
    if bundle is None:
        return None
    return FleetModel.from_bundle(bundle, num_threads=num_threads, max_batch=max_batch)
