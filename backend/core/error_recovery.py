"""The retry loop: runs a call with per-attempt timeouts, retries what is worth retrying
(tenacity carries the loop and the sleeps; :mod:`backend.core.retry_policy` decides), consults
a circuit breaker before every attempt, and tells listeners what happened.

``max_retries=3`` means up to four calls. Errors raised: :class:`PermanentError` at the first
attempt that shows one, :class:`CircuitOpenError` when a breaker refuses, and
:class:`TransientError` when retries, the retry budget or the deadline run out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import NoReturn, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_never

from backend.core.breaker_state import BreakerState
from backend.core.circuit_breaker import CircuitBreaker, Permit
from backend.core.clock import SYSTEM_CLOCK, Clock
from backend.core.errors import (
    CircuitOpenError,
    Classification,
    ErrorCategory,
    PermanentError,
    TransientError,
    classify,
    describe,
)
from backend.core.recovery_events import (
    AttemptEvent,
    AttemptOutcome,
    GiveUpEvent,
    RecoveryListener,
    RetryEvent,
)
from backend.core.retry_policy import (
    Decision,
    GiveUpReason,
    RecoveryConfig,
    RetryBudget,
    RetryPlan,
    plan_retry,
)

T = TypeVar("T")

_CANCELLED = Classification(ErrorCategory.CANCELLED, False, message="cancelled by the caller")


class _Failed(Exception):
    """Internal: one attempt failed; carries the decision to the tenacity loop."""

    def __init__(self, plan: RetryPlan, classification: Classification, cause: BaseException):
        super().__init__(classification.category.value)
        self.plan = plan
        self.classification = classification
        self.cause = cause


class _Call:
    """The state of one ``execute_with_retry`` call: attempt count and the attempt event that
    waits for its actual sleep to be known."""

    def __init__(
        self,
        manager: ErrorRecoveryManager,
        context: str,
        breaker: CircuitBreaker | None,
        deadline: float | None,
        attempt_timeout: float,
        listeners: tuple[RecoveryListener, ...],
    ) -> None:
        self.manager = manager
        self.clock = manager.clock
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
                self._key(),
                breaker_state,
                started_at,
                self.clock.monotonic() - started,
                AttemptOutcome.SUCCESS,
                None,
                Decision.SUCCEED,
            )
        )
        return result

    def _key(self) -> str | None:
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
                    self._key(),
                    BreakerState.OPEN,
                    started_at,
                    self.clock.monotonic() - started,
                    AttemptOutcome.REFUSED,
                    classification,
                    Decision.GIVE_UP,
                    give_up_reason=GiveUpReason.CIRCUIT_OPEN,
                )
            )
            self.manager.notify_give_up(self, GiveUpReason.CIRCUIT_OPEN, classification)
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
                self._key(),
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
            plan = await self.manager.plan(self, classification)
        event = AttemptEvent(
            self.context,
            self.attempt,
            self._key(),
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
            self.manager.notify_give_up(self, plan.reason or GiveUpReason.PERMANENT, classification)
        raise _Failed(plan, classification, exc) from exc


class ErrorRecoveryManager:
    """Runs calls with retries, timeouts, a retry budget and an optional circuit breaker.

    One manager is meant to be shared by every call in a process (the retry budget is per
    manager). Listeners given here hear every call; ``listeners=`` on a call adds more.
    """

    def __init__(
        self,
        config: RecoveryConfig | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        listeners: Iterable[RecoveryListener] = (),
        rng: Callable[[float, float], float] | None = None,
    ) -> None:
        self.config = config or RecoveryConfig()
        self.clock = clock
        self.budget = RetryBudget(self.config, clock.monotonic)
        self._listeners: list[RecoveryListener] = list(listeners)
        self._rng = rng

    def add_listener(self, listener: RecoveryListener) -> None:
        self._listeners.append(listener)

    async def plan(self, call: _Call, classification: Classification) -> RetryPlan:
        """Decide what follows a failed attempt, spending retry budget only on a retry."""
        kwargs = {} if self._rng is None else {"rng": self._rng}
        plan = plan_retry(
            self.config, classification, attempt=call.attempt, remaining=call.remaining(), **kwargs
        )
        if plan.decision is not Decision.RETRY:
            return plan
        if call.breaker is not None and (await call.breaker.snapshot()).state is BreakerState.OPEN:
            return RetryPlan(Decision.GIVE_UP, reason=GiveUpReason.CIRCUIT_OPEN)
        if not self.budget.try_spend():
            return RetryPlan(Decision.GIVE_UP, reason=GiveUpReason.BUDGET)
        return plan

    def notify_give_up(
        self, call: _Call, reason: GiveUpReason, classification: Classification
    ) -> None:
        event = GiveUpEvent(call.context, call.sent, reason, classification, call._key())
        for listener in call.listeners:
            listener.on_give_up(event)

    async def execute_with_retry(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        context: str = "call",
        timeout_seconds: float | None = None,
        breaker: CircuitBreaker | None = None,
        deadline: float | None = None,
        listeners: Iterable[RecoveryListener] = (),
    ) -> T:
        """Await ``fn()`` until it succeeds or retrying stops making sense.

        ``timeout_seconds`` bounds each attempt (default: the config's 30 s); ``deadline`` is
        an absolute time on the manager clock's ``monotonic()`` scale that bounds the whole
        call, waits included.
        """
        call = _Call(
            self,
            context,
            breaker,
            deadline,
            timeout_seconds or self.config.attempt_timeout,
            (*self._listeners, *listeners),
        )
        self.budget.record_call()
        retrying = AsyncRetrying(
            retry=retry_if_exception(
                lambda exc: isinstance(exc, _Failed) and exc.plan.decision is Decision.RETRY
            ),
            wait=_planned_wait,
            stop=stop_never,
            sleep=self.clock.sleep,
            before_sleep=lambda state: self._on_retry(call, state),
            reraise=True,
        )
        try:
            return await retrying(call.run_attempt, fn)
        except _Failed as failed:
            raise self._error(call, failed) from failed.cause
        except asyncio.CancelledError:
            call.flush_pending(cancelled=True)
            raise

    def _on_retry(self, call: _Call, state: RetryCallState) -> None:
        failed = _failure_of(state)
        event = RetryEvent(
            call.context, call.attempt, failed.plan.wait, failed.classification, call._key()
        )
        for listener in call.listeners:
            listener.on_retry(event)

    @staticmethod
    def _error(call: _Call, failed: _Failed) -> PermanentError | TransientError:
        classification = failed.classification
        message = describe(call.context, classification, call.sent)
        reason = failed.plan.reason
        if reason is GiveUpReason.BUDGET:
            message += " Retries were skipped: the retry budget for this window is spent."
        elif reason is GiveUpReason.DEADLINE:
            message += " The call's deadline left no time for another attempt."
        elif reason is GiveUpReason.RETRY_AFTER_TOO_LONG:
            message += (
                f" The provider asked to wait {classification.retry_after_seconds:g} s, "
                "longer than the configured ceiling."
            )
        elif reason is GiveUpReason.CIRCUIT_OPEN:
            message += " The target's breaker opened, so no further attempt was made."
        kind = TransientError if classification.transient else PermanentError
        if reason is GiveUpReason.DEADLINE:
            kind = TransientError
        return kind(
            message, category=classification.category, attempts=call.sent, cause=failed.cause
        )

    def execute_with_retry_sync(
        self,
        fn: Callable[[], T],
        *,
        context: str = "call",
        timeout_seconds: float | None = None,
        breaker: CircuitBreaker | None = None,
        deadline: float | None = None,
        listeners: Iterable[RecoveryListener] = (),
    ) -> T:
        """The same semantics for a blocking ``fn``. Each attempt runs on its own daemon thread,
        so an attempt that blocks past its timeout is abandoned instead of hanging the caller."""

        async def attempt() -> T:
            return await _in_daemon_thread(fn)

        coroutine = self.execute_with_retry(
            attempt,
            context=context,
            timeout_seconds=timeout_seconds,
            breaker=breaker,
            deadline=deadline,
            listeners=listeners,
        )
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coroutine)
        # Called from inside an event loop: run the loop of our own on another thread.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, coroutine).result()


def _planned_wait(state: RetryCallState) -> float:
    return _failure_of(state).plan.wait


def _failure_of(state: RetryCallState) -> _Failed:
    assert state.outcome is not None
    failed = state.outcome.exception()
    assert isinstance(failed, _Failed)
    return failed


async def _in_daemon_thread(fn: Callable[[], T]) -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(set_outcome: Callable[[], None]) -> None:
        if not future.done():
            set_outcome()

    def hand_over(set_outcome: Callable[[], None]) -> None:
        try:
            loop.call_soon_threadsafe(settle, set_outcome)
        except RuntimeError:
            return  # the loop is closed: the caller timed out and abandoned this attempt

    def run() -> None:
        try:
            value = fn()
        except BaseException as exc:  # handed to the awaiting task, classified there
            error = exc
            hand_over(lambda: future.set_exception(error))
        else:
            hand_over(lambda: future.set_result(value))

    threading.Thread(target=run, name="bulwark-sync-attempt", daemon=True).start()
    return await future


__all__ = ["ErrorRecoveryManager", "RecoveryConfig"]
