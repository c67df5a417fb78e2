"""Ports of the realtime service: the forecasting model (any backend) and window state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from services.realtime.core.spec import ModelSpec
from services.realtime.core.window import WindowState


class ForecastModel(Protocol):
    """A trained model behind any backend (LiteRT, TensorFlow, SageMaker endpoint).

    ``predict`` takes raw, unscaled feature windows ``(batch, input_steps, features)`` in
    ``spec.features`` order and returns ``(batch, horizon_steps, len(spec.quantiles))``
    in kW: scaling lives behind the port, identical for every backend.
    """

    spec: ModelSpec

    def predict(self, windows: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]: ...


@dataclass
class LoadReport:
    """States found, by household; ``unreadable`` maps a household to why its stored state
    could not be read (e.g. an older state format): the caller starts it afresh."""

    states: dict[str, WindowState] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)


@dataclass
class SaveReport:
    """What a save did per household: ``stale`` = a state at least as new was already
    stored (a redelivery or a concurrent writer: not an error, nothing rolled back);
    ``failed`` = not written, with the reason (the caller retries its records)."""

    written: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class StateStore(Protocol):
    """Window states by household, written only forward in stream position.

    A save must never replace a stored state with one of a lower or equal ``position``,
    so a redelivered batch cannot roll a household back.
    """

    def load(self, household_ids: Sequence[str]) -> LoadReport: ...

    def save(self, states: Sequence[WindowState]) -> SaveReport: ...
