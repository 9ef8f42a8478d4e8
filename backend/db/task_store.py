"""The task store on a SQL database (``tasks``): the queue, the leases and the outcomes.

Rules, in domain words:

* **Every status change is one guarded statement.** A worker's writes carry
  ``WHERE id = :id AND status = 'running' AND lease_owner = :worker``; the row count says
  whether it still held the task. A worker that lost its lease cannot finish, release or
  renew the task.
* **Claiming is atomic.** PostgreSQL selects the oldest claimable rows ``FOR UPDATE SKIP
  LOCKED`` and updates them in the same transaction, so concurrent claimers never wait for
  nor share a row; SQLite does the same under ``BEGIN IMMEDIATE`` (one writer at a time).
  Claimable: queued, or running on an expired lease (its worker died). A claim counts one
  attempt; a task whose attempts reached ``max_attempts`` fails with ``worker_lost``, and one
  whose deadline passed fails with ``deadline_exceeded``, instead of being claimed.
* **A released task gives its attempt back** (``attempts - 1``): its worker let go of it on a
  clean shutdown, which must not bring it closer to ``worker_lost``.
* **A created task is committed** before :meth:`SqlTaskStore.create` returns; one idempotency
  key per owner is enforced by a unique constraint (``INSERT ... ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, RowMapping, Table, and_, case, func, insert, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.core.clock import SYSTEM_CLOCK, Clock
from backend.db.engine import WRITE_TRANSACTION
from backend.db.models import TaskRow
from backend.tasks.model import (
    Heartbeat,
    IdempotencyConflict,
    InvalidCursor,
    NewTask,
    Task,
    TaskError,
    TaskPage,
    TaskStatus,
)

T = cast(Table, TaskRow.__table__)
#: Columns that are Task fields as they are.
_FIELDS = tuple(
    c.name for c in T.c if c.name not in {"status", "error_code", "error_message", "heartbeat_at"}
)
#: Rounds of candidates one claim looks at while some fail instead of being claimed.
_CLAIM_ROUNDS = 10
_CANCELLED = TaskError("cancelled", "the task was cancelled")


class SqlTaskStore:
    """A :class:`~backend.tasks.model.TaskStore` on SQLite or PostgreSQL (see module)."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**WRITE_TRANSACTION)
        self._dialect = engine.dialect.name
        # SQLite has one writer at a time: queue this process's writers here rather than on
        # SQLite's busy handler, which polls with sleeps.
        self._write_lock = asyncio.Lock() if self._dialect == "sqlite" else None
        self._clock = clock

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self._write_lock or contextlib.nullcontext(), self._writer.begin() as conn:
            yield conn

    async def create(self, new: NewTask) -> tuple[Task, bool]:
        now = self._clock.now()
        values: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "owner": new.owner,
            "type": new.type,
            "input": new.input,
            "status": TaskStatus.QUEUED.value,
            "created_at": now,
            "updated_at": now,
            "deadline_at": now + timedelta(seconds=new.deadline_seconds),
            "deadline_seconds": new.deadline_seconds,
            "max_attempts": new.max_attempts,
            "attempts": 0,
            "cancel_requested": False,
            "idempotency_key": new.idempotency_key,
            "input_hash": new.input_hash or input_fingerprint(new.type, new.input),
        }
        try:
            async with self._write() as conn:
                row = (await conn.execute(self._insert(values).returning(*T.c))).first()
                if row is not None:
                    return task_from_row(row._mapping), True
                if new.idempotency_key is None:
                    raise RuntimeError(f"task id {values['id']} is already taken")
        except IntegrityError:  # a concurrent create, on a dialect without ON CONFLICT
            if new.idempotency_key is None:
                raise
        async with self._engine.connect() as conn:
            query = select(T).where(
                T.c.owner == new.owner, T.c.idempotency_key == new.idempotency_key
            )
            existing = task_from_row((await conn.execute(query)).one()._mapping)
        if existing.input_hash != values["input_hash"]:
            raise IdempotencyConflict(existing.id)
        return existing, False

    def _insert(self, values: dict[str, Any]) -> Any:
        if self._dialect == "postgresql":
            return postgresql.insert(T).values(values).on_conflict_do_nothing()
        if self._dialect == "sqlite":
            return sqlite.insert(T).values(values).on_conflict_do_nothing()
        return insert(T).values(values)

    async def get(self, task_id: str, owner: str | None = None) -> Task | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(T).where(_owned(task_id, owner)))).first()
        return task_from_row(row._mapping) if row is not None else None

    async def list(
        self,
        owner: str | None,
        *,
        status: TaskStatus | None = None,
        type: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> TaskPage:
        limit = max(1, limit)
        query = select(T).order_by(T.c.created_at.desc(), T.c.id.desc()).limit(limit + 1)
        if owner is not None:
            query = query.where(T.c.owner == owner)
        if status is not None:
            query = query.where(T.c.status == TaskStatus(status).value)
        if type is not None:
            query = query.where(T.c.type == type)
        if cursor:
            at, last_id = decode_cursor(cursor)
            query = query.where(
                or_(T.c.created_at < at, and_(T.c.created_at == at, T.c.id < last_id))
            )
        async with self._engine.connect() as conn:
            tasks = [task_from_row(r._mapping) for r in await conn.execute(query)]
        more = len(tasks) > limit
        tasks = tasks[:limit]
        return TaskPage(tasks, encode_cursor(tasks[-1]) if more else None)

    async def count_queued(self, owner: str) -> int:
        query = select(func.count()).where(
            T.c.owner == owner, T.c.status == TaskStatus.QUEUED.value
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def request_cancel(self, task_id: str, owner: str | None = None) -> Task | None:
        for _ in range(3):  # a task may change status between the guarded statements
            now = self._clock.now()
            async with self._write() as conn:
                for status, values in (
                    (TaskStatus.QUEUED, _finished(TaskStatus.CANCELLED, now, error=_CANCELLED)),
                    (TaskStatus.RUNNING, {"cancel_requested": True, "updated_at": now}),
                ):
                    guard = and_(_owned(task_id, owner), T.c.status == status.value)
                    row = (await conn.execute(_update(guard, values))).first()
                    if row is not None:
                        return task_from_row(row._mapping)
                found = (await conn.execute(select(T).where(_owned(task_id, owner)))).first()
            if found is None:
                return None
            task = task_from_row(found._mapping)
            if task.status.finished:
                return task
        return task

    async def claim(
        self, worker_id: str, *, lease_seconds: float, limit: int = 1
    ) -> builtins.list[Task]:
        claimed: builtins.list[Task] = []
        if limit < 1:
            return claimed
        async with self._write() as conn:
            for _ in range(_CLAIM_ROUNDS):
                now = self._clock.now()
                query = (
                    select(T.c.id, T.c.attempts, T.c.max_attempts, T.c.deadline_at)
                    .where(claimable(now))
                    .order_by(T.c.created_at, T.c.id)
                    .limit(limit - len(claimed))
                )
                if self._dialect == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                candidates = (await conn.execute(query)).all()
                runnable = []
                for row in candidates:
                    guard = and_(T.c.id == row.id, claimable(now))
                    if row.deadline_at <= now:
                        error = TaskError("deadline_exceeded", "the task's deadline passed")
                        await conn.execute(_update(guard, _finished(TaskStatus.FAILED, now, error)))
                    elif row.attempts >= row.max_attempts:
                        error = TaskError(
                            "worker_lost",
                            f"the task's worker stopped responding {row.attempts} times "
                            f"(max_attempts {row.max_attempts}); it is not run again",
                        )
                        await conn.execute(_update(guard, _finished(TaskStatus.FAILED, now, error)))
                    else:
                        runnable.append(row.id)
                if runnable:
                    guard = and_(T.c.id.in_(runnable), claimable(now))
                    rows = await conn.execute(_update(guard, _lease(worker_id, now, lease_seconds)))
                    claimed.extend(task_from_row(r._mapping) for r in rows)
                if len(runnable) == len(candidates) or len(claimed) >= limit:
                    break
        return sorted(claimed, key=lambda t: (t.created_at, t.id))

    async def heartbeat(self, task_id: str, worker_id: str, *, lease_seconds: float) -> Heartbeat:
        now = self._clock.now()
        values = {"lease_expires_at": now + timedelta(seconds=lease_seconds), "heartbeat_at": now}
        async with self._write() as conn:
            row = (await conn.execute(_update(held_by(task_id, worker_id), values))).first()
        if row is None:
            return Heartbeat(owned=False)
        return Heartbeat(owned=True, cancel_requested=bool(row.cancel_requested))

    async def finish(
        self,
        task_id: str,
        worker_id: str,
        status: TaskStatus,
        *,
        result: dict[str, Any] | None = None,
        error: TaskError | None = None,
    ) -> bool:
        if not TaskStatus(status).finished:
            raise ValueError(f"finish() needs a finished status, not {status!r}")
        values = _finished(TaskStatus(status), self._clock.now(), error, result=result)
        async with self._write() as conn:
            row = (await conn.execute(_update(held_by(task_id, worker_id), values))).first()
        return row is not None

    async def release(self, task_id: str, worker_id: str) -> bool:
        now = self._clock.now()
        requeue = {
            "status": TaskStatus.QUEUED.value,
            "attempts": case((T.c.attempts > 0, T.c.attempts - 1), else_=0),
            "lease_owner": None,
            "lease_expires_at": None,
            "heartbeat_at": None,
            "updated_at": now,
        }
        async with self._write() as conn:
            guard = and_(held_by(task_id, worker_id), T.c.cancel_requested.is_(True))
            cancelled = _finished(TaskStatus.CANCELLED, now, _CANCELLED)
            if (await conn.execute(_update(guard, cancelled))).first() is not None:
                return True
            row = (await conn.execute(_update(held_by(task_id, worker_id), requeue))).first()
        return row is not None


def _update(guard: ColumnElement[bool], values: dict[str, Any]) -> Any:
    return sql_update(T).where(guard).values(values).returning(*T.c)


def _owned(task_id: str, owner: str | None) -> ColumnElement[bool]:
    return T.c.id == task_id if owner is None else and_(T.c.id == task_id, T.c.owner == owner)


def _lease(worker_id: str, now: datetime, lease_seconds: float) -> dict[str, Any]:
    return {
        "status": TaskStatus.RUNNING.value,
        "attempts": T.c.attempts + 1,
        "lease_owner": worker_id,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
        "heartbeat_at": now,
        "started_at": func.coalesce(T.c.started_at, now),
        "updated_at": now,
    }


def _finished(
    status: TaskStatus, now: datetime, error: TaskError | None, *, result: Any = None
) -> dict[str, Any]:
    return {
        "status": status.value,
        "result": result,
        "error_code": error.code if error is not None else None,
        "error_message": error.message if error is not None else None,
        "finished_at": now,
        "updated_at": now,
        "lease_expires_at": None,
    }


def claimable(now: datetime) -> ColumnElement[bool]:
    """Queued, or running on a lease that expired (its worker stopped renewing it)."""
    return or_(
        T.c.status == TaskStatus.QUEUED.value,
        and_(T.c.status == TaskStatus.RUNNING.value, T.c.lease_expires_at < now),
    )


def held_by(task_id: str, worker_id: str) -> ColumnElement[bool]:
    """The task runs on ``worker_id``'s lease: the guard of every write a worker makes."""
    return and_(
        T.c.id == task_id,
        T.c.status == TaskStatus.RUNNING.value,
        T.c.lease_owner == worker_id,
    )


def task_from_row(row: RowMapping) -> Task:
    code = row["error_code"]
    error = TaskError(code, row["error_message"] or "") if code is not None else None
    values = {name: row[name] for name in _FIELDS}
    values["cancel_requested"] = bool(values["cancel_requested"])
    return Task(status=TaskStatus(row["status"]), error=error, **values)


def input_fingerprint(task_type: str, input: dict[str, Any]) -> str:
    """SHA-256 (hex) of the task type and input as canonical JSON: two submissions under one
    idempotency key are the same request when their fingerprints are equal."""
    canonical = json.dumps(
        {"type": task_type, "input": input}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode_cursor(task: Task) -> str:
    """An opaque cursor for the page after ``task`` (newest first by ``(created_at, id)``)."""
    raw = json.dumps([task.created_at.isoformat(), task.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, task_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        at = datetime.fromisoformat(created)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidCursor(f"invalid cursor {cursor[:40]!r}") from exc
    if at.tzinfo is None or not isinstance(task_id, str):
        raise InvalidCursor(f"invalid cursor {cursor[:40]!r}")
    return at, task_id


__all__ = [
    "SqlTaskStore",
    "claimable",
    "decode_cursor",
    "encode_cursor",
    "held_by",
    "input_fingerprint",
    "task_from_row",
]
