"""Run the bundle's LiteRT flatbuffer on batches of any size, without TensorFlow.

The flatbuffer is converted from an *unrolled* copy of the LSTM with a dynamic batch
dimension (see ``export.litert_flatbuffer``), so the interpreter can be resized to any
batch: :class:`LiteRtRunner` calls ``resize_tensor_input`` + ``allocate_tensors`` only
when the batch size changes, and splits batches above ``max_batch`` into chunks so the
arena stays bounded. Inputs and outputs are the *scaled* model tensors; scaling lives in
:class:`~services.realtime.core.spec.ModelSpec`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["LiteRtRunner"]


class LiteRtRunner:
    """A LiteRT interpreter over one flatbuffer, resized on demand.

    >>> from services.realtime.model.bundle import LITERT_FILE, shipped_bundle_dir
    >>> runner = LiteRtRunner(shipped_bundle_dir() / LITERT_FILE)  # doctest: +SKIP
    >>> runner(np.zeros((3, 96, 11), np.float32)).shape  # doctest: +SKIP
    (3, 16, 3)
    """

    def __init__(self, model: Path | bytes, *, num_threads: int = 1, max_batch: int = 1024):
        from ai_edge_litert.interpreter import Interpreter

        content = model if isinstance(model, bytes) else Path(model).read_bytes()
        self._interpreter: Any = Interpreter(model_content=content, num_threads=num_threads)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch = -1
        self.max_batch = max_batch
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in self._input["shape"][1:])

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            self._interpreter.resize_tensor_input(
                self._input["index"], [batch, *self.input_shape], strict=False
            )
            self._interpreter.allocate_tensors()
            self._batch = batch

    def __call__(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Scaled windows ``(batch, steps, features)`` -> scaled outputs, float32."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 3 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"expected (batch, {self.input_shape}), got {x.shape}")
        if len(x) == 0:
            self._resize(1)
            shape = self._interpreter.get_output_details()[0]["shape"][1:]
            return np.zeros((0, *shape), dtype=np.float32)
        parts = []
        for start in range(0, len(x), self.max_batch):
            chunk = x[start : start + self.max_batch]
            self._resize(len(chunk))
            self._interpreter.set_tensor(self._input["index"], chunk)
            self._interpreter.invoke()
            parts.append(self._interpreter.get_tensor(self._output["index"]).copy())
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
