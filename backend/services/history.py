"""Read models of the LLM call history (``llm_calls``, ``llm_attempts``): a task's calls with
their attempts, and the admin's filtered call list (per-target aggregates are in
:mod:`backend.services.stats`).

Pages are newest first; a cursor is an opaque token naming the last call of the previous
page (its start time and id), so pages stay stable while new calls arrive.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import selectinload

from backend.db.models import LLMAttemptRow, LLMCallRow
from backend.services.errors import InvalidRequestError

MAX_PAGE_SIZE = 200


@dataclass(frozen=True, slots=True)
class AttemptView:
    attempt: int
    target: str
    outcome: str
    category: str | None
    http_status: int | None
    started_at: datetime
    duration_ms: float
    decision: str
    wait_ms: float | None
    retry_after_ms: float | None
    breaker_state: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class CallView:
    id: str
    context: str
    agent: str | None
    task_id: str | None
    route: str | None
    target: str | None
    outcome: str
    category: str | None
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    replayed: bool
    error: str | None
    input_tokens: int | None
    output_tokens: int | None
    attempts: list[AttemptView]


@dataclass(frozen=True, slots=True)
class CallFilter:
    target: str | None = None
    """Calls that tried this target (on any attempt) or ended on it."""
    agent: str | None = None
    outcome: str | None = None
    category: str | None = None
    task_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class CallPage:
    calls: list[CallView]
    next_cursor: str | None


def _attempt(row: LLMAttemptRow) -> AttemptView:
    return AttemptView(
        attempt=row.attempt,
        target=row.target,
        outcome=row.outcome,
        category=row.category,
        http_status=row.http_status,
        started_at=row.started_at,
        duration_ms=row.duration_ms,
        decision=row.decision,
        wait_ms=row.wait_ms,
        retry_after_ms=row.retry_after_ms,
        breaker_state=row.breaker_state,
        error=row.error,
    )


def _call(row: LLMCallRow) -> CallView:
    return CallView(
        id=row.id,
        context=row.context,
        agent=row.agent,
        task_id=row.task_id,
        route=row.route,
        target=row.target,
        outcome=row.outcome,
        category=row.category,
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration_ms=row.duration_ms,
        replayed=row.replayed,
        error=row.error,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        attempts=[_attempt(a) for a in row.attempt_rows],
    )


def encode_cursor(started_at: datetime, call_id: str) -> str:
    raw = json.dumps([started_at.isoformat(), call_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, call_id = json.loads(raw)
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None or not isinstance(call_id, str):
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequestError([("cursor", "not a cursor this service issued")]) from None
    return moment, call_id


class HistoryService:
    """Queries of the call history; read-only."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def task_calls(self, task_id: str) -> builtins.list[CallView]:
        """The calls made for a task, oldest first (ownership is the caller's check)."""
        query = (
            select(LLMCallRow)
            .where(LLMCallRow.task_id == task_id)
            .options(selectinload(LLMCallRow.attempt_rows))
            .order_by(LLMCallRow.started_at, LLMCallRow.id)
        )
        async with self._sessions() as session:
            return [_call(row) for row in (await session.scalars(query)).all()]

    async def calls(
        self, filters: CallFilter, *, cursor: str | None = None, limit: int = 50
    ) -> CallPage:
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        query = (
            select(LLMCallRow)
            .where(*_conditions(_in_utc(filters)))
            .options(selectinload(LLMCallRow.attempt_rows))
            .order_by(LLMCallRow.started_at.desc(), LLMCallRow.id.desc())
            .limit(limit + 1)
        )
        if cursor is not None:
            at, call_id = decode_cursor(cursor)
            query = query.where(
                or_(
                    LLMCallRow.started_at < at,
                    and_(LLMCallRow.started_at == at, LLMCallRow.id < call_id),
                )
            )
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        calls = [_call(row) for row in rows[:limit]]
        more = len(rows) > limit
        last = calls[-1] if calls else None
        return CallPage(calls, encode_cursor(last.started_at, last.id) if more and last else None)


def _in_utc(filters: CallFilter) -> CallFilter:
    """``since``/``until`` as UTC; a time with no zone, or out of range in UTC, is refused."""
    bounds: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        moment: datetime | None = getattr(filters, name)
        try:
            if moment is not None and moment.tzinfo is None:
                raise ValueError(name)
            bounds[name] = moment.astimezone(UTC) if moment is not None else None
        except (ValueError, OverflowError):
            raise InvalidRequestError(
                [(name, "a date and time with a time zone, e.g. 2026-01-01T00:00:00Z")]
            ) from None
    return replace(filters, since=bounds["since"], until=bounds["until"])


def _conditions(filters: CallFilter) -> builtins.list[ColumnElement[bool]]:
    conditions: builtins.list[ColumnElement[bool]] = []
    if filters.target is not None:
        tried = (
            select(LLMAttemptRow.id)
            .where(LLMAttemptRow.call_id == LLMCallRow.id, LLMAttemptRow.target == filters.target)
            .exists()
        )
        conditions.append(or_(LLMCallRow.target == filters.target, tried))
    for column, value in (
        (LLMCallRow.agent, filters.agent),
        (LLMCallRow.outcome, filters.outcome),
        (LLMCallRow.category, filters.category),
        (LLMCallRow.task_id, filters.task_id),
    ):
        if value is not None:
            conditions.append(column == value)
    if filters.since is not None:
        conditions.append(LLMCallRow.started_at >= filters.since)
    if filters.until is not None:
        conditions.append(LLMCallRow.started_at < filters.until)
    return conditions


__all__ = [
    "AttemptView",
    "CallFilter",
    "CallPage",
    "CallView",
    "HistoryService",
    "decode_cursor",
    "encode_cursor",
]
