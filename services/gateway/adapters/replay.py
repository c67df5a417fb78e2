"""A ``ReplayStarter`` that runs a replay function in a background thread and tracks it.

The gateway does not know how a replay is done: the composition root hands in ``run``
(locally, a closure over ingest's replay and the stack's publisher), called as
``run(request, on_progress)``; ``on_progress`` accepts any report object with
``fraction`` and ``readings_published`` attributes (ingest's ``SourceReport`` has both).
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Callable
from typing import Any

from services.gateway.core.pipeline import ReplayJob, ReplayRequest
from services.gateway.ports import ReplayBusy

__all__ = ["ThreadedReplayStarter"]

ReplayRun = Callable[[ReplayRequest, Callable[[Any], None]], Any]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ThreadedReplayStarter:
    """Runs one replay at a time in a daemon thread; keeps every job's last progress."""

    def __init__(self, run: ReplayRun, *, clock: Callable[[], dt.datetime] = _now) -> None:
        self._run = run
        self._clock = clock
        self._jobs: dict[str, ReplayJob] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.threads: list[threading.Thread] = []

    def start(self, request: ReplayRequest) -> ReplayJob:
        with self._lock:
            if any(job.state == "running" for job in self._jobs.values()):
                raise ReplayBusy("a replay is already running; wait for it to finish")
            job = ReplayJob(
                id=f"replay-{next(self._ids)}",
                request=request,
                state="running",
                started_at=self._clock(),
            )
            self._jobs[job.id] = job
        thread = threading.Thread(target=self._work, args=(job.id,), name=job.id, daemon=True)
        self.threads.append(thread)
        thread.start()
        return job

    def _update(self, job_id: str, **changes: Any) -> None:
        with self._lock:
            self._jobs[job_id] = self._jobs[job_id].model_copy(update=changes)

    def _work(self, job_id: str) -> None:
        def on_progress(report: Any) -> None:
            self._update(
                job_id,
                fraction=min(1.0, max(0.0, float(getattr(report, "fraction", 0.0)))),
                readings_published=int(getattr(report, "readings_published", 0)),
            )

        try:
            self._run(self._jobs[job_id].request, on_progress)
        except Exception as error:  # reported on the job, shown by the dashboard
            self._update(
                job_id,
                state="failed",
                finished_at=self._clock(),
                error=f"{type(error).__name__}: {error}"[:2000],
            )
            return
        self._update(job_id, state="finished", fraction=1.0, finished_at=self._clock())

    def jobs(self) -> list[ReplayJob]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda job: job.started_at, reverse=True)
