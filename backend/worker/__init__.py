"""The task worker: claims tasks from the task store and runs their agents.

:func:`run_worker` runs one until told to stop (``bulwark worker``); :class:`WorkerHandle`
embeds one in an application (``bulwark serve``); :class:`Worker` is the claim loop itself,
for those who build its parts; :class:`TaskRunner` runs one claimed task."""

from __future__ import annotations

from backend.worker.main import WorkerHandle, run_worker
from backend.worker.outcome import Outcome, StopReason
from backend.worker.runner import TaskRunner
from backend.worker.worker import Worker, default_worker_id

__all__ = [
    "Outcome",
    "StopReason",
    "TaskRunner",
    "Worker",
    "WorkerHandle",
    "default_worker_id",
    "run_worker",
]
