"""Runs one claimed task: its agent inside the task's deadline, a heartbeat that keeps the
lease, and the write of the outcome (:mod:`backend.worker.outcome` decides which).

Rules, in domain words:

* The agent runs in an asyncio task of its own, inside ``asyncio.timeout_at`` of the task's
  deadline; its :class:`~agents.context.AgentContext` carries the same deadline, so every LLM
  call stops there too.
* The heartbeat renews the lease every ``heartbeat_seconds`` (a third of the lease). When it
  learns that cancellation was requested, it sets ``ctx.cancelled`` and cancels the agent
  (its LLM call in flight stops). When the lease is gone (another worker took the task), or
  could not be renewed before it ran out (database unreachable), the agent is cancelled and
  nothing is written: the task is the other worker's now.
* The answers a task's earlier runs received are replayed (``load_replay``) so that a re-run
  does not pay for them twice.
* Writes of the outcome are retried while the database is unreachable, for at most one lease;
  past that, the lease has run out and another worker runs the task again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from agents.context import AgentContext
from agents.registry import AgentRegistry
from backend.core.clock import SYSTEM_CLOCK, Clock
from backend.llm.gateway import LLMGateway
from backend.llm.replay import ReplayBook
from backend.logging_setup import bind_log_context
from backend.metrics import TaskMetrics
from backend.tasks.model import Task, TaskStore
from backend.worker.outcome import Action, InvalidInput, Outcome, StopReason, decide

log = logging.getLogger("bulwark.worker")

#: What an unreachable database looks like from here.
DB_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError, SQLAlchemyError)
ReplayLoader = Callable[[str], Awaitable[ReplayBook]]
#: Pause between two tries of a write while the database is unreachable.
RETRY_SECONDS = 0.5


class TaskRunner:
    """One claimed task, run to its end by :meth:`run`; :meth:`stop` interrupts it."""

    def __init__(
        self,
        task: Task,
        *,
        store: TaskStore,
        gateway: LLMGateway,
        registry: AgentRegistry,
        worker_id: str,
        lease_seconds: float,
        heartbeat_seconds: float | None = None,
        replay_loader: ReplayLoader | None = None,
        clock: Clock = SYSTEM_CLOCK,
        metrics: TaskMetrics | None = None,
    ) -> None:
        self.task = task
        self._metrics = metrics
        self._store = store
        self._gateway = gateway
        self._registry = registry
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._heartbeat_seconds = heartbeat_seconds or lease_seconds / 3
        self._replay_loader = replay_loader
        self._clock = clock
        self._stop: StopReason | None = None
        self._agent_run: asyncio.Task[dict[str, Any]] | None = None
        self.cancelled = asyncio.Event()
        self.log = logging.LoggerAdapter(log, {"task_id": task.id, "worker_id": worker_id})
        # A conservative local view of the lease: when it runs out (monotonic clock).
        expires = task.lease_expires_at
        left = (expires - clock.now()).total_seconds() if expires else lease_seconds
        self._lease_end = clock.monotonic() + left

    def stop(self, reason: StopReason) -> None:
        """Interrupt the agent: the first reason given is the one that counts."""
        if self._stop is None:
            self._stop = reason
            if reason is StopReason.CANCEL_REQUESTED:
                self.cancelled.set()
        if self._agent_run is not None:
            self._agent_run.cancel()

    async def run(self) -> Outcome:
        """Run the agent and write its outcome; never raises (bugs are logged)."""
        task, started = self.task, self._clock.monotonic()
        self.log.info("task %s (%s) started, attempt %d", task.id, task.type, task.attempts)
        try:
            with bind_log_context(task_id=task.id):  # every record made for the task says so
                outcome = await self._run()
        except Exception:
            self.log.exception("task %s: the runner failed; the lease will run out", task.id)
            return Outcome(Action.DROP)
        elapsed = self._clock.monotonic() - started
        what = outcome.status.value if outcome.status else outcome.action.value
        code = f" ({outcome.error.code})" if outcome.error else ""
        self.log.info("task %s %s%s after %.2f s", task.id, what, code, elapsed)
        if self._metrics is not None and outcome.status is not None and outcome.status.finished:
            self._metrics.task_finished(task.type, outcome.status.value, elapsed)
        return outcome

    async def _run(self) -> Outcome:
        task = self.task
        deadline_at = task.deadline_at or task.created_at + timedelta(seconds=task.deadline_seconds)
        remaining = (deadline_at - self._clock.now()).total_seconds()
        replay = await self._replay() if self._stop is None else None
        ctx = AgentContext(
            gateway=self._gateway,
            registry=self._registry,
            task_id=task.id,
            deadline=self._clock.monotonic() + remaining,
            cancelled=self.cancelled,
            logger=self.log,
            replay=replay,
        )
        loop_deadline = asyncio.get_running_loop().time() + remaining
        self._agent_run = asyncio.create_task(
            self._execute(ctx, loop_deadline), name=f"bulwark-task-{task.id}"
        )
        if self._stop is not None:
            self._agent_run.cancel()
        heartbeat = asyncio.create_task(self._heartbeat(), name=f"bulwark-lease-{task.id}")
        try:
            await asyncio.wait({self._agent_run})
        except asyncio.CancelledError:  # the runner itself: release the task, then go
            self.stop(StopReason.SHUTDOWN)
            await self._conclude(self._agent_run, heartbeat, loop_deadline)
            raise
        return await self._conclude(self._agent_run, heartbeat, loop_deadline)

    async def _conclude(
        self,
        agent_run: asyncio.Task[dict[str, Any]],
        heartbeat: asyncio.Task[None],
        loop_deadline: float,
    ) -> Outcome:
        heartbeat.cancel()
        await asyncio.wait({heartbeat, agent_run})
        outcome = decide(
            agent_run,
            stop=self._stop,
            deadline_passed=asyncio.get_running_loop().time() >= loop_deadline,
            deadline_seconds=self.task.deadline_seconds,
            logger=self.log,
        )
        await self._record(outcome)
        return outcome

    async def _execute(self, ctx: AgentContext, loop_deadline: float) -> dict[str, Any]:
        agent_class = self._registry.get(self.task.type)
        try:
            parsed = agent_class.Input.model_validate(self.task.input)
        except ValidationError as problem:
            raise InvalidInput(agent_class.name, problem) from None
        async with asyncio.timeout_at(loop_deadline):
            output = await agent_class().execute(parsed, ctx)
        result: dict[str, Any] = output.model_dump(mode="json")
        return result

    async def _replay(self) -> ReplayBook | None:
        if self._replay_loader is None:
            return None
        try:
            book = await self._replay_loader(self.task.id)
        except DB_ERRORS as exc:
            self.log.warning("task %s: no replay, history unreadable (%s)", self.task.id, exc)
            return None
        if len(book) == 0:
            return None
        self.log.info("task %s: %d earlier answers to replay", self.task.id, len(book))
        return book

    async def _heartbeat(self) -> None:
        """Renew the lease until the agent ends; stop it on cancellation or a lost lease."""
        task = self.task
        while True:
            left = self._lease_end - self._clock.monotonic()
            await asyncio.sleep(max(0.0, min(self._heartbeat_seconds, left)))
            left = self._lease_end - self._clock.monotonic()
            if left <= 0:
                self.log.warning("task %s: lease ran out before it was renewed", task.id)
                self.stop(StopReason.LEASE_LOST)
                return
            sent = self._clock.monotonic()
            try:
                async with asyncio.timeout(left):
                    beat = await self._store.heartbeat(
                        task.id, self._worker_id, lease_seconds=self._lease_seconds
                    )
            except DB_ERRORS as exc:
                self.log.warning("task %s: heartbeat failed (%s)", task.id, type(exc).__name__)
                continue
            if not beat.owned:
                self.log.warning("task %s: lease lost to another worker", task.id)
                self.stop(StopReason.LEASE_LOST)
                return
            self._lease_end = sent + self._lease_seconds
            if beat.cancel_requested:
                self.stop(StopReason.CANCEL_REQUESTED)
                return

    async def _record(self, outcome: Outcome) -> None:
        task, worker = self.task, self._worker_id
        if outcome.action is Action.DROP:
            return
        if outcome.action is Action.RELEASE:
            await self._persist("release", lambda: self._store.release(task.id, worker))
            return
        assert outcome.status is not None
        status = outcome.status
        try:  # so that the task's calls are visible once it is finished
            await self._gateway.flush_history()
        except DB_ERRORS as exc:
            self.log.warning("task %s: call history not flushed (%s)", task.id, exc)
        await self._persist(
            status.value,
            lambda: self._store.finish(
                task.id, worker, status, result=outcome.result, error=outcome.error
            ),
        )

    async def _persist(self, what: str, write: Callable[[], Awaitable[bool]]) -> None:
        give_up = self._clock.monotonic() + self._lease_seconds
        while True:
            try:
                if not await write():
                    self.log.warning("task %s: not %s, its lease was lost", self.task.id, what)
                return
            except DB_ERRORS as exc:
                if self._clock.monotonic() + RETRY_SECONDS > give_up:
                    self.log.error(
                        "task %s: could not write %s (%s); another worker will run it again",
                        self.task.id,
                        what,
                        exc,
                    )
                    return
                await asyncio.sleep(RETRY_SECONDS)


__all__ = ["DB_ERRORS", "ReplayLoader", "TaskRunner"]
