"""What a trained real-time model expects and returns (its bundle's ``metadata.json``).

Training writes it; every inference backend (LiteRT, TensorFlow, SageMaker) and the
streaming core read it, so window length, resolution and scaling are never guessed.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.realtime.core.features import FEATURES, TARGET

QUANTILES_DEFAULT: Final = (0.1, 0.5, 0.9)


class ModelSpec(BaseModel):
    """Shape, scaling and identity of a model; stored as the bundle's metadata.json."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(min_length=1)
    resolution_s: int = Field(gt=0)
    input_steps: int = Field(gt=0)
    horizon_steps: int = Field(gt=0)
    features: tuple[str, ...] = FEATURES
    target: str = TARGET
    #: Output quantiles, ascending; the middle one is the point forecast.
    quantiles: tuple[float, ...] = QUANTILES_DEFAULT
    #: Per-feature mean and standard deviation used to scale inputs (and the target).
    feature_mean: tuple[float, ...]
    feature_std: tuple[float, ...]

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        n = len(self.features)
        if len(self.feature_mean) != n or len(self.feature_std) != n:
            raise ValueError("feature_mean and feature_std need one value per feature")
        if any(s <= 0 for s in self.feature_std):
            raise ValueError("feature_std must be positive")
        if list(self.quantiles) != sorted(self.quantiles) or len(self.quantiles) < 3:
            raise ValueError("quantiles must be ascending, at least lower/median/upper")
        if self.target not in self.features:
            raise ValueError(f"target {self.target!r} must be one of the features")
        return self

    @property
    def target_index(self) -> int:
        return self.features.index(self.target)

    def scale(self, windows: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Raw feature windows ``(batch, input_steps, features)`` -> model input."""
        mean = np.asarray(self.feature_mean, dtype=np.float32)
        std = np.asarray(self.feature_std, dtype=np.float32)
        return ((np.asarray(windows, dtype=np.float32) - mean) / std).astype(np.float32)

    def unscale_target(self, values: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """Model output (scaled target) -> kW."""
        i = self.target_index
        return np.asarray(values, dtype=np.float64) * self.feature_std[i] + self.feature_mean[i]
