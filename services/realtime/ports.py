"""Ports of the realtime service: the forecasting model (any backend) and window state."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from services.realtime.core.spec import ModelSpec


class ForecastModel(Protocol):
    """A trained model behind any backend (LiteRT, TensorFlow, SageMaker endpoint).

    ``predict`` takes raw, unscaled feature windows ``(batch, input_steps, features)`` in
    ``spec.features`` order and returns ``(batch, horizon_steps, len(spec.quantiles))``
    in kW: scaling lives behind the port, identical for every backend.
    """

    spec: ModelSpec

    def predict(self, windows: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]: ...
