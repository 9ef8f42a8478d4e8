"""The rules of submitting and following tasks, whoever asks (REST API or CLI).

* A task's ``type`` must be served by an agent of the registry, and its ``input`` must
  validate against that agent's ``Input`` model; the stored input is the validated one.
* The input, encoded as compact JSON, may not exceed ``max_bytes``.
* A client may have at most ``queued_limit`` tasks waiting; past that it is told to retry.
* ``deadline_seconds`` defaults to ``default_deadline`` and may not exceed ``max_deadline``.
* With an idempotency key, the same request (same type, input and deadline, hashed) returns
  the task it created the first time; another request under the same key is a conflict.
* A client sees only its own tasks: another client's task is "not found".
* Reading a task may wait (long-poll) up to :data:`MAX_WAIT_SECONDS` for it to finish.
"""

from __future__ import annotations

import builtins
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from agents.registry import AgentRegistry
from backend.config import Settings
from backend.core.clock import SYSTEM_CLOCK, Clock
from backend.services.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    TooManyQueuedError,
    UnknownTaskTypeError,
)
from backend.services.history import CallView
from backend.tasks.model import (
    IdempotencyConflict,
    InvalidCursor,
    NewTask,
    Task,
    TaskPage,
    TaskStatus,
    TaskStore,
)

#: Longest a read waits for a task to finish (``GET /v1/tasks/{id}?wait=``).
MAX_WAIT_SECONDS = 60.0
#: What a client over its queued limit is told to wait, in seconds.
QUEUE_RETRY_AFTER = 5
MAX_PAGE_SIZE = 200
_POLL_FIRST, _POLL_MAX = 0.05, 0.5


@dataclass(frozen=True, slots=True)
class TaskRules:
    max_bytes: int = 256 * 1024
    queued_limit: int = 100
    default_deadline: float = 300.0
    max_deadline: float = 3600.0
    max_attempts: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> TaskRules:
        return cls(
            max_bytes=settings.max_code_bytes,
            queued_limit=settings.client_queued_limit,
            default_deadline=settings.task_deadline_seconds,
            max_deadline=settings.task_max_deadline_seconds,
            max_attempts=settings.task_max_attempts,
        )


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("input", "code")`` → ``"input.code"``; list indexes as ``[0]``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def request_hash(task_type: str, input: Mapping[str, Any], deadline: float | None) -> str:
    """The fingerprint an idempotency key is bound to."""
    canonical = json.dumps(
        {"type": task_type, "input": input, "deadline_seconds": deadline},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class TaskCalls(Protocol):
    async def task_calls(self, task_id: str) -> builtins.list[CallView]: ...


def _plausible_id(task_id: str) -> bool:
    """Ids this service hands out are short and printable; anything else is not a task."""
    return 0 < len(task_id) <= 64 and task_id.isprintable() and task_id.isascii()


class TaskService:
    """Submit, read, list and cancel tasks on behalf of an owner (an API key id)."""

    def __init__(
        self,
        store: TaskStore,
        registry: AgentRegistry,
        rules: TaskRules | None = None,
        *,
        history: TaskCalls | None = None,
        on_submitted: Callable[[], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """``on_submitted`` is called after a task is created (e.g. to wake a worker)."""
        self.store = store
        self.registry = registry
        self.rules = rules or TaskRules()
        self._history = history
        self._on_submitted = on_submitted
        self._clock = clock

    async def submit(
        self,
        owner: str,
        task_type: str,
        input: Mapping[str, Any],
        *,
        deadline_seconds: float | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Task, bool]:
        """The new task and ``True``, or, for a repeated idempotent request, the task it
        created and ``False``."""
        size = len(json.dumps(input, separators=(",", ":"), ensure_ascii=False).encode())
        if size > self.rules.max_bytes:
            raise PayloadTooLargeError(size, self.rules.max_bytes)
        if task_type not in self.registry:
            raise UnknownTaskTypeError(task_type, self.registry.types())
        agent = self.registry.get(task_type)
        try:
            validated = agent.Input.model_validate(dict(input)).model_dump(mode="json")
        except ValidationError as exc:
            raise InvalidRequestError(
                [(field_path(("input", *e["loc"])), e["msg"]) for e in exc.errors()]
            ) from None
        deadline = self._deadline(deadline_seconds)
        if await self.store.count_queued(owner) >= self.rules.queued_limit:
            raise TooManyQueuedError(
                f"you have {self.rules.queued_limit} tasks queued, the most allowed; "
                "retry when some have started",
                QUEUE_RETRY_AFTER,
            )
        new = NewTask(
            owner=owner,
            type=task_type,
            input=validated,
            deadline_seconds=deadline,
            max_attempts=self.rules.max_attempts,
            idempotency_key=idempotency_key,
            input_hash=(
                request_hash(task_type, validated, deadline_seconds) if idempotency_key else None
            ),
        )
        try:
            task, created = await self.store.create(new)
        except IdempotencyConflict as exc:
            raise ConflictError(
                "idempotency_conflict",
                f"the Idempotency-Key was already used for another request (task {exc.task_id})",
            ) from None
        if created and self._on_submitted is not None:
            self._on_submitted()
        return task, created

    def _deadline(self, requested: float | None) -> float:
        if requested is None:
            return self.rules.default_deadline
        if not 0 < requested <= self.rules.max_deadline:
            raise InvalidRequestError(
                [
                    (
                        "deadline_seconds",
                        f"must be greater than 0 and at most {self.rules.max_deadline:g}",
                    )
                ]
            )
        return requested

    async def get(self, owner: str, task_id: str, *, wait: float = 0.0) -> Task:
        """The owner's task; with ``wait``, once it finishes or ``wait`` seconds pass
        (capped at :data:`MAX_WAIT_SECONDS`), whichever comes first."""
        give_up = self._clock.monotonic() + min(max(wait, 0.0), MAX_WAIT_SECONDS)
        pause = _POLL_FIRST
        while True:
            task = await self._owned(owner, task_id)
            left = give_up - self._clock.monotonic()
            if task.status.finished or left <= 0:
                return task
            await self._clock.sleep(min(pause, left))
            pause = min(pause * 2, _POLL_MAX)

    async def _owned(self, owner: str, task_id: str) -> Task:
        task = await self.store.get(task_id, owner) if _plausible_id(task_id) else None
        if task is None:
            raise NotFoundError(f"no task {task_id!r}")
        return task

    async def calls(self, owner: str, task_id: str) -> builtins.list[CallView]:
        """The LLM calls made for the owner's task, oldest first, each with its attempts."""
        await self._owned(owner, task_id)
        if self._history is None:
            return []
        return await self._history.task_calls(task_id)

    async def list(
        self,
        owner: str,
        *,
        status: TaskStatus | None = None,
        task_type: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> TaskPage:
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        try:
            return await self.store.list(
                owner, status=status, type=task_type, cursor=cursor, limit=limit
            )
        except InvalidCursor:
            raise InvalidRequestError([("cursor", "not a cursor this service issued")]) from None

    async def cancel(self, owner: str, task_id: str) -> Task:
        """Cancel a queued task at once, ask a running one's worker to stop; a task that
        already succeeded or failed cannot be cancelled."""
        found = await self.store.request_cancel(task_id, owner) if _plausible_id(task_id) else None
        if found is None:
            raise NotFoundError(f"no task {task_id!r}")
        task = found
        if task.status in (TaskStatus.SUCCEEDED, TaskStatus.FAILED):
            raise ConflictError("not_cancellable", f"task {task_id} already {task.status.value}")
        return task


__all__ = [
    "MAX_WAIT_SECONDS",
    "QUEUE_RETRY_AFTER",
    "TaskCalls",
    "TaskRules",
    "TaskService",
    "field_path",
    "request_hash",
]
