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
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_never

from backend.core.attempts import AttemptFailed, RetryingCall
from backend.core.breaker_state import BreakerState
from backend.core.circuit_breaker import CircuitBreaker
from backend.core.clock import SYSTEM_CLOCK, Clock
from backend.core.errors import (
    Classification,
    PermanentError,
    TransientError,
    describe,
)
from backend.core.recovery_events import (
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
from backend.core.sync_bridge import run_in_daemon_thread

T = TypeVar("T")


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

    async def plan(self, call: RetryingCall, classification: Classification) -> RetryPlan:
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
        call = RetryingCall(
            self.clock,
            self.plan,
            context,
            breaker,
            deadline,
            timeout_seconds or self.config.attempt_timeout,
            (*self._listeners, *listeners),
        )
        self.budget.record_call()
        retrying = AsyncRetrying(
            retry=retry_if_exception(
                lambda exc: isinstance(exc, AttemptFailed) and exc.plan.decision is Decision.RETRY
            ),
            wait=_planned_wait,
            stop=stop_never,
            sleep=self.clock.sleep,
            before_sleep=lambda state: self._on_retry(call, state),
            reraise=True,
        )
        try:
            return await retrying(call.run_attempt, fn)
        except AttemptFailed as failed:
            raise self._error(call, failed) from failed.cause
        except asyncio.CancelledError:
            call.flush_pending(cancelled=True)
            raise

    def _on_retry(self, call: RetryingCall, state: RetryCallState) -> None:
        failed = _failure_of(state)
        event = RetryEvent(
            call.context, call.attempt, failed.plan.wait, failed.classification, call.key
        )
        for listener in call.listeners:
            listener.on_retry(event)

    @staticmethod
    def _error(call: RetryingCall, failed: AttemptFailed) -> PermanentError | TransientError:
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
            return await run_in_daemon_thread(fn)

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


def _failure_of(state: RetryCallState) -> AttemptFailed:
    assert state.outcome is not None
    failed = state.outcome.exception()
    assert isinstance(failed, AttemptFailed)
    return failed


__all__ = ["ErrorRecoveryManager", "RecoveryConfig"]
