"""Gauges that describe shared state rather than this process's own events: every breaker's
state (so a reset made by another process or the CLI reaches this process's ``/metrics``)
and the number of queued tasks. Read from the database every few seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.breaker_state import BreakerStore
from backend.db.breaker_store import UNAVAILABLE
from backend.db.models import TaskRow
from backend.metrics import BulwarkMetrics, TaskMetrics, observe_breaker_snapshots
from backend.tasks.model import TaskStatus

log = logging.getLogger("bulwark.metrics")

OBSERVE_SECONDS = 5.0


async def observe_once(engine: AsyncEngine, store: BreakerStore, metrics: BulwarkMetrics) -> None:
    observe_breaker_snapshots(metrics, await store.list())
    async with engine.connect() as conn:
        queued = await conn.scalar(
            select(func.count()).select_from(TaskRow).where(TaskRow.status == TaskStatus.QUEUED)
        )
    TaskMetrics(metrics).set_queued(int(queued or 0))


@contextlib.asynccontextmanager
async def shared_state_observer(
    engine: AsyncEngine,
    store: BreakerStore,
    metrics: BulwarkMetrics,
    *,
    every: float = OBSERVE_SECONDS,
) -> AsyncIterator[None]:
    """Keep the shared-state gauges fresh while the block runs."""

    async def loop() -> None:
        while True:
            try:
                await observe_once(engine, store, metrics)
            except UNAVAILABLE as exc:  # the database is down: the gauges wait for it
                log.warning("metrics: cannot read shared state (%s)", type(exc).__name__)
            await asyncio.sleep(every)

    task = asyncio.get_running_loop().create_task(loop(), name="bulwark-metrics-observer")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = ["observe_once", "shared_state_observer"]
