"""The worker ``bulwark serve`` runs in-process (``settings.embedded_workers``): built with
the application's own LLM gateway, engine and task store, so one process has one breaker
cache and one call recorder, and woken as soon as a task is submitted."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from agents.registry import AgentRegistry
from backend.config import Settings
from backend.db.replay_store import load_replay
from backend.llm.gateway import LLMGateway
from backend.metrics import BulwarkMetrics, TaskMetrics
from backend.tasks.model import TaskStore
from backend.worker import Worker

logger = logging.getLogger("bulwark.worker")


@asynccontextmanager
async def embedded_worker(
    settings: Settings,
    *,
    registry: AgentRegistry,
    gateway: LLMGateway,
    store: TaskStore,
    engine: AsyncEngine,
    metrics: BulwarkMetrics | None = None,
) -> AsyncIterator[Worker]:
    """Run a worker while the context is open; on exit it drains (up to
    ``worker_grace_seconds``) and releases what is left to the queue."""
    worker = Worker.from_settings(
        settings,
        store=store,
        gateway=gateway,
        registry=registry,
        replay_loader=functools.partial(load_replay, engine),
        metrics=TaskMetrics(metrics) if metrics is not None else None,
    )
    run = asyncio.create_task(worker.run(), name="bulwark-embedded-worker")
    run.add_done_callback(_log_failure)
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait([run])


def _log_failure(run: asyncio.Task[None]) -> None:
    if not run.cancelled() and run.exception() is not None:
        logger.error("the embedded worker stopped with an error", exc_info=run.exception())


__all__ = ["embedded_worker"]
