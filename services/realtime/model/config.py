"""Model configurations: shapes and training budgets, importable without TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from services.realtime.core.features import DEFAULT_MAX_GAP_S
from services.realtime.core.spec import QUANTILES_DEFAULT

__all__ = ["STREAMING", "ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Shape and training budget of one model; everything a run needs besides the data."""

    resolution_s: int = 900
    input_steps: int = 96
    horizon_steps: int = 16
    quantiles: tuple[float, ...] = QUANTILES_DEFAULT
    #: LSTM units; with ``input_steps / patch`` this sets the inference cost.
    units: int = 48
    #: Conv1D front end with kernel = stride = ``patch`` (1: the LSTM reads the raw bins).
    patch: int = 2
    filters: int = 32
    #: Dropout on the LSTM's output during training (none at inference).
    dropout: float = 0.0
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 1e-3
    #: Training windows start every ``origin_stride`` bins (1: every bin).
    origin_stride: int = 1
    #: The last fraction of the training windows (in time) picks the best epoch.
    validation_fraction: float = 0.1
    max_gap_s: int = DEFAULT_MAX_GAP_S
    seed: int = 7
    version_prefix: str = "lstm15"


#: The shipped streaming model: 15-minute bins, one day in, four hours out.
STREAMING: Final = ModelConfig()
