"""Running one task on the local database, in this process, without a server (``bulwark
review FILE`` and ``bulwark code`` without ``--server``): the task is stored like any other
(so its calls are in the history), and a worker runs in-process until it has finished.

The worker takes tasks in queue order: tasks already queued in the same database run first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from agents.registry import AgentRegistry
from backend.config import Settings
from backend.core.clock import SYSTEM_CLOCK, Clock
from backend.db.engine import create_engine
from backend.db.migrate import upgrade_async
from backend.db.task_store import SqlTaskStore
from backend.services.tasks import TaskRules, TaskService
from backend.tasks.model import Task
from backend.worker import run_worker

#: Owner of the tasks the CLI runs locally.
LOCAL_OWNER = "local-cli"
#: How often progress is reported while waiting.
PROGRESS_SECONDS = 1.0

LocalProgress = Callable[[Task, float], None]


async def run_locally(
    settings: Settings,
    task_type: str,
    input: Mapping[str, Any],
    *,
    max_wait: float,
    progress: LocalProgress | None = None,
    registry: AgentRegistry | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> Task:
    """Submit the task to the local database and run a worker here until the task has
    finished or ``max_wait`` seconds have passed; the task as it then is."""
    registry = registry if registry is not None else AgentRegistry.discover(settings.agents)
    engine = create_engine(settings.database_url)
    try:
        if engine.dialect.name == "sqlite":
            await upgrade_async(settings.database_url)
        tasks = TaskService(SqlTaskStore(engine), registry, TaskRules.from_settings(settings))
        task, _ = await tasks.submit(LOCAL_OWNER, task_type, input)
        stop = asyncio.Event()
        quick = settings.model_copy(update={"worker_grace_seconds": 0.0})
        worker = asyncio.create_task(run_worker(quick, registry=registry, stop=stop))
        started = clock.monotonic()
        try:
            while not task.status.finished and not worker.done():
                left = max_wait - (clock.monotonic() - started)
                if left <= 0:
                    break
                task = await tasks.get(LOCAL_OWNER, task.id, wait=min(PROGRESS_SECONDS, left))
                if progress is not None:
                    progress(task, clock.monotonic() - started)
        finally:
            stop.set()
            if worker.done():
                worker.result()  # the worker's own failure, if it failed
            else:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
        return await tasks.get(LOCAL_OWNER, task.id)
    finally:
        await engine.dispose()


__all__ = ["LOCAL_OWNER", "run_locally"]
