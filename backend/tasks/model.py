"""Tasks as the service sees them: statuses, the task record, API keys, and the store
protocols the SQL implementations fulfil (``backend.db.task_store``, ``backend.db.key_store``).

Status rules, in domain words:

* ``queued`` → ``running`` when a worker claims it (with a lease it must renew by heartbeat);
* ``running`` → ``succeeded`` | ``failed`` | ``cancelled`` only by the worker holding the lease;
* ``running`` → ``queued`` when its worker lets it go (clean shutdown), or when its lease
  expires and it is claimed again (its worker died); past ``max_attempts`` claims it fails
  with ``worker_lost`` instead;
* ``queued`` → ``cancelled`` at once on request; a running task gets ``cancel_requested`` and
  its worker stops it.
"""

from __future__ import annotations

import builtins
import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


class TaskStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class TaskError:
    """Why a task failed: a stable ``code`` (an error category, ``worker_lost``,
    ``deadline_exceeded``, ``invalid_output``, ...) and a message for people."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    owner: str
    """The id of the API key that submitted it."""
    type: str
    input: dict[str, Any]
    status: TaskStatus
    created_at: datetime
    updated_at: datetime
    deadline_seconds: float
    max_attempts: int
    attempts: int = 0
    """How many times a worker has claimed it."""
    result: dict[str, Any] | None = None
    error: TaskError | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested: bool = False
    idempotency_key: str | None = None
    input_hash: str | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    deadline_at: datetime | None = None
    """``created_at + deadline_seconds``: the task never runs past it."""


@dataclass(frozen=True, slots=True)
class NewTask:
    owner: str
    type: str
    input: dict[str, Any]
    deadline_seconds: float
    max_attempts: int
    idempotency_key: str | None = None
    input_hash: str | None = None


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[Task]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What a heartbeat learned: whether the worker still holds the lease, and whether the
    task's cancellation was requested."""

    owned: bool
    cancel_requested: bool = False


class IdempotencyConflict(Exception):
    """The idempotency key was used before with another request body."""

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.task_id = task_id


class InvalidCursor(ValueError):
    """A pagination cursor that no :meth:`TaskStore.list` call handed out."""


class TaskStore(Protocol):
    async def create(self, new: NewTask) -> tuple[Task, bool]:
        """Insert and commit the task; with an idempotency key already used by the same
        owner, return the existing task and ``False`` (or raise :class:`IdempotencyConflict`
        when its input hash differs)."""
        ...

    async def get(self, task_id: str, owner: str | None = None) -> Task | None:
        """The task, or ``None`` (also when ``owner`` is given and is not the task's)."""
        ...

    async def list(
        self,
        owner: str | None,
        *,
        status: TaskStatus | None = None,
        type: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> TaskPage:
        """Newest first; ``cursor`` continues a previous page (:class:`InvalidCursor` when it
        is not one this method handed out)."""
        ...

    async def count_queued(self, owner: str) -> int: ...

    async def request_cancel(self, task_id: str, owner: str | None = None) -> Task | None:
        """Cancel a queued task at once; flag a running one; leave a finished one as is."""
        ...

    async def claim(
        self, worker_id: str, *, lease_seconds: float, limit: int = 1
    ) -> builtins.list[Task]:
        """Claim up to ``limit`` runnable tasks (queued, or running with an expired lease),
        oldest first, atomically: no task is claimed by two workers. Tasks past
        ``max_attempts`` are failed with ``worker_lost`` instead of being returned."""
        ...

    async def heartbeat(
        self, task_id: str, worker_id: str, *, lease_seconds: float
    ) -> Heartbeat: ...

    async def finish(
        self,
        task_id: str,
        worker_id: str,
        status: TaskStatus,
        *,
        result: dict[str, Any] | None = None,
        error: TaskError | None = None,
    ) -> bool:
        """Record the outcome, only if ``worker_id`` still holds the lease."""
        ...

    async def release(self, task_id: str, worker_id: str) -> bool:
        """Put a running task back in the queue (clean shutdown), only if ``worker_id`` still
        holds the lease. The claim is given back (``attempts`` goes down by one): a worker
        that let go of a task did not die, so this run does not count towards
        ``worker_lost``. A task whose cancellation was requested is cancelled instead."""
        ...


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    admin: bool
    created_at: datetime
    revoked: bool = False
    prefix: str = ""
    """The secret's first characters (``bwk_`` and a few more), to tell keys apart."""


class ApiKeyStore(Protocol):
    async def create(self, name: str, *, admin: bool = False) -> tuple[str, ApiKey]:
        """A new key: the secret (shown once, never stored) and its record."""
        ...

    async def authenticate(self, secret: str) -> ApiKey | None: ...

    async def list(self) -> builtins.list[ApiKey]: ...

    async def count(self) -> int: ...


__all__ = [
    "ApiKey",
    "ApiKeyStore",
    "Heartbeat",
    "IdempotencyConflict",
    "InvalidCursor",
    "NewTask",
    "Task",
    "TaskError",
    "TaskPage",
    "TaskStatus",
    "TaskStore",
]
