"""Loads the answers a task's earlier runs received, for :class:`backend.llm.replay.ReplayBook`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.models import LLMCallRow
from backend.llm.replay import ReplayBook, ReplayEntry


async def load_replay(engine: AsyncEngine, task_id: str) -> ReplayBook:
    """The task's successful, non-replayed calls that kept their answer, oldest first."""
    query = (
        select(
            LLMCallRow.request_hash,
            LLMCallRow.response_text,
            LLMCallRow.target,
            LLMCallRow.input_tokens,
            LLMCallRow.output_tokens,
        )
        .where(
            LLMCallRow.task_id == task_id,
            LLMCallRow.outcome == "success",
            LLMCallRow.replayed.is_(False),
            LLMCallRow.request_hash.is_not(None),
            LLMCallRow.response_text.is_not(None),
        )
        .order_by(LLMCallRow.started_at, LLMCallRow.id)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return ReplayBook(
        [
            ReplayEntry(
                request_hash=row.request_hash,
                text=row.response_text,
                target=row.target or "unknown",
                input_tokens=row.input_tokens,
                output_tokens=row.output_tokens,
            )
            for row in rows
        ]
    )


__all__ = ["load_replay"]
