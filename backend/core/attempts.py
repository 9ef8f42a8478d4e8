"""One call under the recovery manager: its attempts, each admitted by the breaker, bounded
by a timeout, classified when it fails, and reported to listeners once its consequence (and
the wait it led to) is known. The loop around it is tenacity's, driven by the manager."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import NoReturn, TypeVar

from backend.core.breaker_state import BreakerState
from backend.core.circuit_breaker import CircuitBreaker, Permit
from backend.core.clock import Clock
from backend.core.errors import CircuitOpenError, Classification, ErrorCategory, classify
from backend.core.recovery_events import (
    AttemptEvent,
    AttemptOutcome,
    GiveUpEvent,
    RecoveryListener,
)
from backend.core.retry_policy import Decision, GiveUpReason, RetryPlan

T = TypeVar("T")

_CANCELLED = Classification(ErrorCategory.CANCELLED, False, message="cancelled by the caller")


class AttemptFailed(Exception):
    """Internal: one attempt failed; carries the decision to the tenacity loop."""

    def __init__(self, plan: RetryPlan, classification: Classification, cause: BaseException):
        super().__init__(classification.category.value)
        self.plan = plan
        self.classification = classification
        self.cause = cause


class RetryingCall:
    """The state of one ``execute_with_retry`` call: attempt count and the attempt event that
    waits for its actual sleep to be known."""

    def __init__(
        self,
        clock: Clock,
        planner: Callable[[RetryingCall, Classification], Awaitable[RetryPlan]],
        context: str,
        breaker: CircuitBreaker | None,
        deadline: float | None,
        attempt_timeout: float,
        listeners: tuple[RecoveryListener, ...],
    ) -> None:
        self.clock = clock
        self._planner = planner
        self.context = context
        self.breaker = breaker
        self.deadline = deadline
        self.attempt_timeout = attempt_timeout
        self.listeners = listeners
        self.sent = 0
        self.attempt = 0
        self.pending: AttemptEvent | None = None
        self.decided_at = 0.0

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.clock.monotonic()

    def emit(self, event: AttemptEvent) -> None:
        for listener in self.listeners:
            listener.on_attempt(event)

    def flush_pending(self, *, cancelled: bool = False) -> None:
        """Emit the attempt that led to a retry, with the wait actually slept."""
        if self.pending is None:
            return
        slept = max(0.0, self.clock.monotonic() - self.decided_at)
        event = self.pending
        self.pending = None
        if cancelled:
            event = dataclasses.replace(
                event, decision=Decision.GIVE_UP, give_up_reason=GiveUpReason.CANCELLED
            )
        self.emit(dataclasses.replace(event, wait=slept))

    async def run_attempt(self, fn: Callable[[], Awaitable[T]]) -> T:
        self.flush_pending()
        self.attempt += 1
        breaker_state, permit = await self._admit()
        started_at, started = self.clock.now(), self.clock.monotonic()
        remaining = self.remaining()
        limit = self.attempt_timeout if remaining is None else min(self.attempt_timeout, remaining)
        imposed_by_caller = remaining is not None and remaining <= self.attempt_timeout
        if limit <= 0:
            expired = TimeoutError("the call's deadline passed before the attempt")
            await self._fail(expired, permit, breaker_state, started_at, started, deadline_hit=True)
        self.sent += 1
        try:
            async with asyncio.timeout(limit):
                result = await fn()
        except asyncio.CancelledError:
            await self._settle_cancelled(permit, breaker_state, started_at, started)
            raise
        except Exception as exc:
            await self._fail(
                exc,
                permit,
                breaker_state,
                started_at,
                started,
                deadline_hit=imposed_by_caller and isinstance(exc, TimeoutError),
            )
        if self.breaker is not None and permit is not None:
            await self.breaker.record_success(permit)
        self.emit(
            AttemptEvent(
                self.context,
                self.attempt,
                self.key,
                breaker_state,
                started_at,
                self.clock.monotonic() - started,
                AttemptOutcome.SUCCESS,
                None,
                Decision.SUCCEED,
            )
        )
        return result

    def notify_give_up(self, reason: GiveUpReason, classification: Classification) -> None:
        event = GiveUpEvent(self.context, self.sent, reason, classification, self.key)
        for listener in self.listeners:
            listener.on_give_up(event)

    @property
    def key(self) -> str | None:
        return None if self.breaker is None else self.breaker.key

    async def _admit(self) -> tuple[BreakerState | None, Permit | None]:
        if self.breaker is None:
            return None, None
        started_at, started = self.clock.now(), self.clock.monotonic()
        try:
            permit = await self.breaker.acquire()
        except CircuitOpenError as exc:
            classification = Classification(ErrorCategory.CIRCUIT_OPEN, False, message=exc.message)
            self.emit(
                AttemptEvent(
                    self.context,
                    self.attempt,
                    self.key,
                    BreakerState.OPEN,
                    started_at,
                    self.clock.monotonic() - started,
                    AttemptOutcome.REFUSED,
                    classification,
                    Decision.GIVE_UP,
                    give_up_reason=GiveUpReason.CIRCUIT_OPEN,
                )
            )
            self.notify_give_up(GiveUpReason.CIRCUIT_OPEN, classification)
            exc.attempts = self.sent
            raise
        return (BreakerState.HALF_OPEN if permit.probe else BreakerState.CLOSED), permit

    async def _settle_cancelled(
        self,
        permit: Permit | None,
        state: BreakerState | None,
        started_at: datetime,
        started: float,
    ) -> None:
        if self.breaker is not None and permit is not None:
            await asyncio.shield(self.breaker.release(permit))
        self.emit(
            AttemptEvent(
                self.context,
                self.attempt,
                self.key,
                state,
                started_at,
                self.clock.monotonic() - started,
                AttemptOutcome.FAILURE,
                _CANCELLED,
                Decision.GIVE_UP,
                give_up_reason=GiveUpReason.CANCELLED,
            )
        )

    async def _fail(
        self,
        exc: Exception,
        permit: Permit | None,
        state: BreakerState | None,
        started_at: datetime,
        started: float,
        *,
        deadline_hit: bool,
    ) -> NoReturn:
        classification = classify(exc)
        duration = self.clock.monotonic() - started
        if deadline_hit:
            plan = RetryPlan(Decision.GIVE_UP, reason=GiveUpReason.DEADLINE)
            if self.breaker is not None and permit is not None:
                await self.breaker.release(permit)  # our own deadline says nothing of the target
        else:
            if self.breaker is not None and permit is not None:
                await self.breaker.record_failure(permit, classification)
            plan = await self._planner(self, classification)
        event = AttemptEvent(
            self.context,
            self.attempt,
            self.key,
            state,
            started_at,
            duration,
            AttemptOutcome.FAILURE,
            classification,
            plan.decision,
            give_up_reason=plan.reason,
        )
        if plan.decision is Decision.RETRY:
            self.pending, self.decided_at = event, self.clock.monotonic()
        else:
            self.emit(event)
            self.notify_give_up(plan.reason or GiveUpReason.PERMANENT, classification)
        raise AttemptFailed(plan, classification, exc) from exc


__all__ = ["AttemptFailed", "RetryingCall"]
