"""Writes the LLM call history (``llm_calls``, ``llm_attempts``) off the hot path.

Finished calls are queued in memory by :meth:`CallRecorder.submit` (no I/O) and written in
batches by a background task, one transaction per batch. While the database is unreachable
the queue keeps up to ``buffer_limit`` calls (the oldest are dropped beyond that, with a
warning), and writing resumes when it returns. :meth:`aclose` flushes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from typing import Any

from sqlalchemy import String, Table, insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.engine import WRITE_TRANSACTION
from backend.db.models import LLMAttemptRow, LLMCallRow
from backend.llm.history import AttemptRecord, CallRecord

log = logging.getLogger("bulwark.history")

#: Errors that mean "the database cannot be reached now": keep the rows and try later. Any
#: other database error is about the rows themselves (see :meth:`CallRecorder._write_each`).
_UNREACHABLE = (OSError, OperationalError, InterfaceError, asyncio.TimeoutError)


def _limits(table: Any) -> dict[str, int]:
    assert isinstance(table, Table)
    return {
        c.name: c.type.length
        for c in table.columns
        if isinstance(c.type, String) and c.type.length is not None
    }


_CALL_LIMITS = _limits(LLMCallRow.__table__)
_ATTEMPT_LIMITS = _limits(LLMAttemptRow.__table__)


_CALL_FIELDS = tuple(f.name for f in dataclasses.fields(CallRecord))
_ATTEMPT_FIELDS = tuple(f.name for f in dataclasses.fields(AttemptRecord))


def _row(record: object, names: tuple[str, ...]) -> dict[str, Any]:
    """A record's fields as a row (shallow: ``dataclasses.asdict`` deep-copies every value)."""
    return {name: getattr(record, name) for name in names}


def _fitted(row: dict[str, Any], limits: dict[str, int]) -> dict[str, Any]:
    """The row with its strings cut to their columns' lengths (a long agent name or model
    must not cost the call its history)."""
    for name, length in limits.items():
        value = row.get(name)
        if isinstance(value, str) and len(value) > length:
            row[name] = value[: length - 1] + "…"
    return row


class CallRecorder:
    """A :class:`~backend.llm.history.HistorySink` that batches writes to the database."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        flush_seconds: float = 0.5,
        buffer_limit: int = 10_000,
        batch_size: int = 500,
    ) -> None:
        self._engine = engine
        # SQLite: take the write lock when the transaction begins (BEGIN IMMEDIATE), so the
        # busy timeout applies instead of failing at once on a lock upgrade.
        self._writer = engine.execution_options(**WRITE_TRANSACTION)
        self._flush_seconds = flush_seconds
        self._batch_size = batch_size
        self._queue: deque[tuple[CallRecord, list[AttemptRecord]]] = deque(maxlen=buffer_limit)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._offline = False
        self.dropped = 0

    def submit(self, call: CallRecord, attempts: list[AttemptRecord]) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
            log.warning("history buffer full: the oldest unwritten call was dropped")
        self._queue.append((call, attempts))
        if len(self._queue) >= self._batch_size:
            self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        """Start the background writer on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="bulwark-history-writer"
            )

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._flush_seconds)
            self._wakeup.clear()
            try:
                await self.flush(raise_errors=False)
            except Exception:  # the writer must outlive any one bad flush
                log.exception("history writer: unexpected error; will try again")

    async def flush(self, *, raise_errors: bool = True) -> int:
        """Write every queued call now; returns how many were written."""
        written = 0
        async with self._lock:
            while self._queue:
                batch = [
                    self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))
                ]
                try:
                    try:
                        await self._write(batch)
                    except DBAPIError as exc:
                        if isinstance(exc, _UNREACHABLE):
                            raise
                        await self._write_each(batch)
                except asyncio.CancelledError:
                    self._queue.extendleft(reversed(batch))  # aclose() writes it
                    raise
                except _UNREACHABLE as exc:
                    self._queue.extendleft(reversed(batch))
                    if not self._offline:
                        self._offline = True
                        log.warning(
                            "history database unreachable (%s); keeping up to %d calls in memory",
                            type(exc).__name__,
                            self._queue.maxlen,
                        )
                    if raise_errors:
                        raise
                    return written
                written += len(batch)
            if self._offline:
                self._offline = False
                log.warning("history database reachable again; buffered calls written")
        return written

    async def _write_each(self, batch: list[tuple[CallRecord, list[AttemptRecord]]]) -> None:
        """Write a batch the database refused one call at a time, dropping (with a warning)
        only the calls it refuses on their own."""
        for item in batch:
            try:
                await self._write([item])
            except DBAPIError as exc:
                if isinstance(exc, _UNREACHABLE):
                    raise
                self.dropped += 1
                log.warning(
                    "history: the database refused call %s (%s); it was dropped",
                    item[0].id,
                    type(exc.orig).__name__ if exc.orig else "error",
                )

    async def _write(self, batch: list[tuple[CallRecord, list[AttemptRecord]]]) -> None:
        calls = [_fitted(_row(call, _CALL_FIELDS), _CALL_LIMITS) for call, _ in batch]
        attempts = [
            _fitted(_row(a, _ATTEMPT_FIELDS), _ATTEMPT_LIMITS) for _, rows in batch for a in rows
        ]
        async with self._writer.begin() as conn:
            await conn.execute(insert(LLMCallRow), calls)
            if attempts:
                await conn.execute(insert(LLMAttemptRow), attempts)

    async def aclose(self) -> None:
        """Stop the background writer and write what is queued (best effort if offline)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except _UNREACHABLE:
            log.warning(
                "history database unreachable at shutdown: %d calls not written", len(self._queue)
            )


__all__ = ["CallRecorder"]
