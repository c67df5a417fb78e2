"""In-memory fakes of realtime's ports and of the stream publisher (fakes over mocks),
and the tiny model spec the tests share."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from services.realtime.core.features import FEATURES
from services.realtime.core.spec import ModelSpec
from services.realtime.core.window import WindowState
from services.realtime.ports import LoadReport, SaveReport
from shared.streams.ports import PublishError, PublishReport, StreamRecord

#: Plausible scaling of the UCI features (their order is FEATURES).
FEATURE_MEAN = (1.1, 0.12, 240.0, 4.6, 1.1, 1.3, 6.4, 0.0, 0.0, 0.0, 0.0)
FEATURE_STD = (1.0, 0.1, 3.5, 4.3, 6.0, 5.8, 8.4, 0.7, 0.7, 0.7, 0.7)
#: The fixed batch of the tiny flatbuffer: small, so that padding and chunking happen.
TFLITE_BATCH = 4


def tiny_spec(version: str = "tiny-lstm-test-1") -> ModelSpec:
    """Two hours in (8 x 15 min), one hour out (4 steps), three quantiles."""
    return ModelSpec(
        version=version,
        resolution_s=900,
        input_steps=8,
        horizon_steps=4,
        features=FEATURES,
        feature_mean=FEATURE_MEAN,
        feature_std=FEATURE_STD,
    )


def windows_like(spec: ModelSpec, count: int, seed: int = 3) -> np.ndarray:
    """Raw feature windows around the scaler's means (a stand-in for real windows)."""
    rng = np.random.default_rng(seed)
    shape = (count, spec.input_steps, len(spec.features))
    return np.asarray(spec.feature_mean) + rng.standard_normal(shape) * np.asarray(spec.feature_std)


class PersistenceModel:
    """A ForecastModel in numpy: the last bin's target, +-0.5 kW, for every step.

    Records the size of every call, so tests can check that windows are batched.
    """

    def __init__(self, spec: ModelSpec, *, fail: bool = False) -> None:
        self.spec = spec
        self.calls: list[int] = []
        self.fail = fail

    def predict(self, windows: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        self.calls.append(len(windows))
        if self.fail:
            raise RuntimeError("the endpoint is down")
        last = np.asarray(windows, dtype=np.float64)[:, -1, self.spec.target_index]
        steps = np.repeat(last[:, None], self.spec.horizon_steps, axis=1)
        return np.stack([steps - 0.5, steps, steps + 0.5], axis=-1)


class MemoryStateStore:
    """The StateStore port in memory, with the same never-backwards rule as DynamoDB.

    ``fail_save(household)`` makes that household's save fail; ``fail_load`` makes loads
    raise.
    """

    def __init__(
        self,
        *,
        fail_save: Callable[[str], bool] = lambda household: False,
        fail_load: bool = False,
    ) -> None:
        self.blobs: dict[str, bytes] = {}
        self.writes: list[str] = []
        self.fail_save = fail_save
        self.fail_load = fail_load

    def load(self, household_ids: Sequence[str]) -> LoadReport:
        if self.fail_load:
            raise OSError("state table unavailable")
        report = LoadReport()
        for household in household_ids:
            if household in self.blobs:
                report.states[household] = WindowState.from_bytes(self.blobs[household])
        return report

    def save(self, states: Sequence[WindowState]) -> SaveReport:
        report = SaveReport()
        for state in states:
            household = state.household_id
            if self.fail_save(household):
                report.failed[household] = "simulated write failure"
                continue
            stored = self.blobs.get(household)
            if stored is not None and WindowState.from_bytes(stored).position >= state.position:
                report.stale.append(household)
                continue
            self.blobs[household] = state.to_bytes()
            self.writes.append(household)
            report.written.append(household)
        return report

    def state(self, household: str) -> WindowState:
        return WindowState.from_bytes(self.blobs[household])


class MemoryPublisher:
    """Collects published records in order; ``fail`` makes the next publish calls raise."""

    def __init__(self, *, fail: int = 0) -> None:
        self.records: list[StreamRecord] = []
        self.fail = fail

    def publish(self, records: Sequence[StreamRecord]) -> PublishReport:
        if self.fail:
            self.fail -= 1
            raise PublishError("stream unavailable", failed=records[:1])
        self.records.extend(records)
        return PublishReport(
            records=len(records), bytes=sum(len(r.data) for r in records), requests=1
        )
