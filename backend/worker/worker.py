"""The worker: claims tasks, runs up to ``concurrency`` of them at once, and stops cleanly.

Rules, in domain words:

* **Claim what fits.** The worker claims as many tasks as it has free slots, each run by a
  :class:`~backend.worker.runner.TaskRunner` in an asyncio task of its own. When a task
  ends it claims again at once; when nothing was there, it looks again every
  ``poll_seconds`` (or when :meth:`Worker.wake` is called). While the database is
  unreachable it backs off, up to ``MAX_BACKOFF_SECONDS``, and goes on when it answers.
* **Stop cleanly.** :meth:`Worker.stop` (or the ``stop`` event given to :meth:`Worker.run`)
  ends claiming; running tasks get ``grace_seconds`` to finish; the rest are stopped and
  released to the queue, so that no task is left ``running`` on a worker that is gone.
  ``stop(immediately=True)`` (a second SIGTERM/SIGINT) skips the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid

from agents.registry import AgentRegistry
from backend.config import Settings
from backend.core.clock import SYSTEM_CLOCK, Clock
from backend.llm.gateway import LLMGateway
from backend.metrics import TaskMetrics
from backend.tasks.model import Task, TaskStore
from backend.worker.outcome import StopReason
from backend.worker.runner import DB_ERRORS, ReplayLoader, TaskRunner

log = logging.getLogger("bulwark.worker")

MAX_BACKOFF_SECONDS = 5.0


def default_worker_id() -> str:
    """``host-pid-random``: unique per worker, and says where it runs."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Runs tasks from a :class:`~backend.tasks.model.TaskStore` (see module)."""

    def __init__(
        self,
        store: TaskStore,
        gateway: LLMGateway,
        registry: AgentRegistry,
        *,
        worker_id: str | None = None,
        concurrency: int = 4,
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.5,
        grace_seconds: float = 30.0,
        heartbeat_seconds: float | None = None,
        replay_loader: ReplayLoader | None = None,
        clock: Clock = SYSTEM_CLOCK,
        metrics: TaskMetrics | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.id = worker_id or default_worker_id()
        self.store = store
        self.gateway = gateway
        self.registry = registry
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.grace_seconds = grace_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.replay_loader = replay_loader
        self.clock = clock
        self.metrics = metrics
        self._runs: dict[asyncio.Task[object], TaskRunner] = {}
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._immediately = False
        self._started = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        store: TaskStore,
        gateway: LLMGateway,
        registry: AgentRegistry,
        replay_loader: ReplayLoader | None = None,
        worker_id: str | None = None,
        metrics: TaskMetrics | None = None,
    ) -> Worker:
        """A worker with ``BULWARK_WORKER_*`` settings."""
        return cls(
            store,
            gateway,
            registry,
            worker_id=worker_id,
            concurrency=settings.worker_concurrency,
            lease_seconds=settings.worker_lease_seconds,
            poll_seconds=settings.worker_poll_seconds,
            grace_seconds=settings.worker_grace_seconds,
            replay_loader=replay_loader,
            metrics=metrics,
        )

    @property
    def running(self) -> list[Task]:
        """The tasks running here now."""
        return [runner.task for runner in self._runs.values()]

    def wake(self) -> None:
        """Look for tasks now instead of at the next poll (e.g. right after a submission)."""
        self._wakeup.set()

    def stop(self, *, immediately: bool = False) -> None:
        """Stop claiming and drain (see module); safe to call more than once."""
        if self._stopping and immediately and not self._immediately:
            self._release_all()
        self._stopping = True
        self._immediately = self._immediately or immediately
        self._wakeup.set()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Claim and run tasks until :meth:`stop` is called or ``stop`` is set, then drain."""
        if self._started:
            raise RuntimeError("a Worker runs once; create another one")
        self._started = True
        watcher = asyncio.create_task(self._watch(stop)) if stop is not None else None
        log.info("worker %s started (concurrency %d)", self.id, self.concurrency)
        try:
            await self._claim_loop()
        finally:
            if watcher is not None:
                watcher.cancel()
            await self._drain()
            log.info("worker %s stopped", self.id)

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stop()

    async def _claim_loop(self) -> None:
        delay = self.poll_seconds
        db_down = False
        while not self._stopping:
            self._wakeup.clear()
            free = self.concurrency - len(self._runs)
            claimed: list[Task] = []
            if free > 0:
                try:
                    claimed = await self.store.claim(
                        self.id, lease_seconds=self.lease_seconds, limit=free
                    )
                except DB_ERRORS as exc:
                    if not db_down:
                        log.warning("worker %s: cannot claim tasks (%s)", self.id, exc)
                    db_down = True
                    delay = min(max(delay, self.poll_seconds) * 2, MAX_BACKOFF_SECONDS)
                else:
                    if db_down:
                        log.warning("worker %s: the database answers again", self.id)
                    db_down, delay = False, self.poll_seconds
                for task in claimed:
                    self._start(task)
                if self._stopping:
                    break
            full = free - len(claimed) <= 0
            if full and not db_down:
                await self._wakeup.wait()  # until a task ends, wake() or stop()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), delay)

    def _start(self, task: Task) -> None:
        runner = TaskRunner(
            task,
            store=self.store,
            gateway=self.gateway,
            registry=self.registry,
            worker_id=self.id,
            lease_seconds=self.lease_seconds,
            heartbeat_seconds=self.heartbeat_seconds,
            replay_loader=self.replay_loader,
            clock=self.clock,
            metrics=self.metrics,
        )
        run: asyncio.Task[object] = asyncio.create_task(runner.run(), name=f"bulwark-run-{task.id}")
        self._runs[run] = runner
        run.add_done_callback(self._ended)

    def _ended(self, run: asyncio.Task[object]) -> None:
        runner = self._runs.pop(run, None)
        self._wakeup.set()
        if not run.cancelled() and run.exception() is not None and runner is not None:
            log.error("task %s: runner crashed", runner.task.id, exc_info=run.exception())

    def _release_all(self) -> None:
        for runner in self._runs.values():
            runner.stop(StopReason.SHUTDOWN)

    async def _drain(self) -> None:
        runs = set(self._runs)
        if not runs:
            return
        grace = 0.0 if self._immediately else self.grace_seconds
        log.info("worker %s: waiting up to %g s for %d tasks", self.id, grace, len(runs))
        pending = runs
        if grace > 0:
            _, pending = await asyncio.wait(runs, timeout=grace)
        if pending:
            log.info("worker %s: releasing %d unfinished tasks", self.id, len(pending))
            self._release_all()
            await asyncio.wait(pending)


__all__ = ["MAX_BACKOFF_SECONDS", "Worker", "default_worker_id"]
