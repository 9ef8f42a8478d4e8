"""Entry points: :func:`run_worker` for ``bulwark worker`` (and anything that wants a worker
until told to stop), :class:`WorkerHandle` for running one inside an application
(``bulwark serve``, in the FastAPI lifespan).

Both build what a worker needs from ``Settings``: a gateway (``create_gateway``; on SQLite it
also brings the schema up to date), an engine and the SQL task store, and the agent registry
(``AgentRegistry.discover`` unless one is given); they close all of it when the worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry

from agents.registry import AgentRegistry
from backend.config import Settings
from backend.db.engine import create_engine
from backend.db.replay_store import load_replay
from backend.db.task_store import SqlTaskStore
from backend.llm.factory import create_gateway
from backend.metrics import BulwarkMetrics, TaskMetrics, multiprocess_enabled
from backend.worker.runner import DB_ERRORS
from backend.worker.worker import Worker

log = logging.getLogger("bulwark.worker")


async def run_worker(
    settings: Settings,
    *,
    registry: AgentRegistry | None = None,
    worker_id: str | None = None,
    stop: asyncio.Event | None = None,
    install_signal_handlers: bool = False,
    on_start: Callable[[Worker], None] | None = None,
    metrics: BulwarkMetrics | None = None,
) -> None:
    """Run a worker until ``stop`` is set (or, with ``install_signal_handlers``, SIGTERM or
    SIGINT arrives: the first drains, a second releases the running tasks at once), then
    close everything. Install the handlers only when the worker is the main program.
    ``on_start`` receives the worker once it is built, before it claims anything.
    Without ``metrics``, a worker reports metrics only in multiprocess mode (where the API
    processes on the same host serve them)."""
    if registry is None:
        registry = AgentRegistry.discover(settings.agents)
    if metrics is None and multiprocess_enabled():
        metrics = BulwarkMetrics(CollectorRegistry())
    gateway = await create_gateway(settings, metrics=metrics)
    engine = create_engine(settings.database_url)
    try:
        worker = Worker.from_settings(
            settings,
            store=SqlTaskStore(engine),
            gateway=gateway,
            registry=registry,
            replay_loader=functools.partial(load_replay, engine),
            worker_id=worker_id,
            metrics=TaskMetrics(metrics) if metrics is not None else None,
        )
        if on_start is not None:
            on_start(worker)
        with _signal_handlers(worker) if install_signal_handlers else contextlib.nullcontext():
            await worker.run(stop)
    finally:
        try:
            # Write the call history first: closing the gateway while its background writer
            # is mid-batch could lose that batch.
            with contextlib.suppress(*DB_ERRORS):
                await gateway.flush_history()
            await gateway.aclose()
        finally:
            await engine.dispose()
            log.info("worker resources closed")


@contextlib.contextmanager
def _signal_handlers(worker: Worker) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        again = len(received) > 1
        log.info("worker %s: %s, %s", worker.id, sig.name, "stopping now" if again else "draining")
        worker.stop(immediately=again)

    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


class WorkerHandle:
    """A worker running in the background of an application::

        handle = WorkerHandle(settings)
        handle.start()        # at start-up, on the running event loop
        ...
        handle.wake()         # optional: a task was just submitted
        await handle.stop()   # at shutdown: drains, releases what is left, closes

    A worker that fails (e.g. the database is unreachable at start-up) is logged at once;
    :meth:`stop` raises its error.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        registry: AgentRegistry | None = None,
        worker_id: str | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._worker_id = worker_id
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.worker: Worker | None = None
        """The worker, once built."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("this WorkerHandle was started already")
        self._task = asyncio.create_task(
            run_worker(
                self._settings,
                registry=self._registry,
                worker_id=self._worker_id,
                stop=self._stop,
                on_start=self._built,
            ),
            name="bulwark-embedded-worker",
        )
        self._task.add_done_callback(_log_failure)

    def _built(self, worker: Worker) -> None:
        self.worker = worker

    def wake(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    async def stop(self, *, immediately: bool = False) -> None:
        """Stop the worker (see :meth:`Worker.stop`) and wait until it has closed."""
        self._stop.set()
        if immediately and self.worker is not None:
            self.worker.stop(immediately=True)
        if self._task is not None:
            await self._task


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the embedded worker stopped with an error", exc_info=task.exception())


__all__ = ["WorkerHandle", "run_worker"]
