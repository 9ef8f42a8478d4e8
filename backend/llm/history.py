"""The ledger of LLM calls: one :class:`CallRecord` per logical gateway call and one
:class:`AttemptRecord` per request sent to a provider (or refused by a breaker).

A :class:`CallLog` collects a call's attempts in memory while the call runs (it is a recovery
listener, so it costs no I/O on the hot path) and hands the finished call to a
:class:`HistorySink`, which writes it off the hot path (``backend.db.call_recorder``)."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from backend.core.clock import Clock
from backend.core.errors import Classification
from backend.core.recovery_events import AttemptEvent, BaseRecoveryListener
from backend.core.redact import redact
from backend.core.retry_policy import Decision


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    call_id: str
    attempt: int
    target: str
    started_at: datetime
    duration_ms: float
    outcome: str
    category: str | None = None
    http_status: int | None = None
    request_id: str | None = None
    retry_after_ms: float | None = None
    breaker_state: str | None = None
    decision: str | None = None
    wait_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CallRecord:
    id: str
    context: str
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    outcome: str
    attempts: int
    agent: str | None = None
    task_id: str | None = None
    route: str | None = None
    target: str | None = None
    category: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None
    replayed: bool = False
    request_hash: str | None = None
    response_text: str | None = None


class HistorySink(Protocol):
    """Receives finished calls. ``submit`` must not block or do I/O inline."""

    def submit(self, call: CallRecord, attempts: list[AttemptRecord]) -> None: ...

    async def flush(self) -> int:
        """Write what is queued now; returns how many calls were written."""
        ...


class MemoryHistorySink:
    """Keeps calls in memory (tests, and gateways built without a database)."""

    def __init__(self) -> None:
        self.calls: list[CallRecord] = []
        self.attempts: list[AttemptRecord] = []

    def submit(self, call: CallRecord, attempts: list[AttemptRecord]) -> None:
        self.calls.append(call)
        self.attempts.extend(attempts)

    async def flush(self) -> int:
        return 0


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


@dataclass
class CallLog:
    """One call's attempts, numbered across every target the call tried."""

    context: str
    clock: Clock
    agent: str | None = None
    task_id: str | None = None
    route: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempts: list[AttemptRecord] = field(default_factory=list)
    finished: bool = False

    def __post_init__(self) -> None:
        self.started_at = self.clock.now()
        self._started = self.clock.monotonic()

    def listener(self, target: str) -> BaseRecoveryListener:
        """A recovery listener that files the manager's attempts under ``target``."""
        return _TargetListener(self, target)

    def add(self, target: str, event: AttemptEvent) -> None:
        c: Classification | None = event.classification
        retry_after = c.retry_after_seconds if c is not None else None
        self.attempts.append(
            AttemptRecord(
                call_id=self.id,
                attempt=len(self.attempts) + 1,
                target=target,
                started_at=event.started_at,
                duration_ms=_ms(event.duration),
                outcome=event.outcome.value,
                category=c.category.value if c is not None else None,
                http_status=c.status_code if c is not None else None,
                request_id=c.request_id if c is not None else None,
                retry_after_ms=_ms(retry_after) if retry_after is not None else None,
                breaker_state=event.breaker_state.value if event.breaker_state else None,
                decision=event.decision.value,
                wait_ms=_ms(event.wait) if event.wait else None,
                error=redact(c.message) if c is not None and c.message else None,
            )
        )

    def amend_last(self, **changes: object) -> None:
        """Change the latest attempt (a fallback decision, a stream that failed later)."""
        if self.attempts:
            self.attempts[-1] = dataclasses.replace(self.attempts[-1], **changes)  # type: ignore[arg-type]

    def mark_fallback(self) -> None:
        """The gateway moves on to the route's next target after the latest attempt."""
        if self.attempts and self.attempts[-1].decision == Decision.GIVE_UP.value:
            self.amend_last(decision=Decision.FALLBACK.value)

    def finish(
        self,
        sink: HistorySink | None,
        *,
        outcome: str,
        target: str | None = None,
        category: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        error: str | None = None,
        replayed: bool = False,
        request_hash: str | None = None,
        response_text: str | None = None,
    ) -> CallRecord:
        """Close the call and hand it to ``sink``; a second finish changes nothing."""
        record = CallRecord(
            id=self.id,
            context=self.context,
            started_at=self.started_at,
            finished_at=self.clock.now(),
            duration_ms=_ms(self.clock.monotonic() - self._started),
            outcome=outcome,
            attempts=len(self.attempts),
            agent=self.agent,
            task_id=self.task_id,
            route=self.route,
            target=target,
            category=category,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            error=redact(error) if error else None,
            replayed=replayed,
            request_hash=request_hash,
            response_text=response_text,
        )
        if sink is not None and not self.finished:
            sink.submit(record, list(self.attempts))
        self.finished = True
        return record


class _TargetListener(BaseRecoveryListener):
    """Files a call's attempts under one target (one class for every call, not one per call)."""

    __slots__ = ("_log", "_target")

    def __init__(self, log: CallLog, target: str) -> None:
        self._log = log
        self._target = target

    def on_attempt(self, event: AttemptEvent) -> None:
        self._log.add(self._target, event)


__all__ = [
    "AttemptRecord",
    "CallLog",
    "CallRecord",
    "HistorySink",
    "MemoryHistorySink",
]
