"""ErrorRecoveryManager: the reference's scenarios and the retry rules, on a fake clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx2
import openai
import pytest

from backend.core.circuit_breaker import CircuitBreaker
from backend.core.error_recovery import ErrorRecoveryManager, RecoveryConfig
from backend.core.errors import (
    CircuitOpenError,
    ErrorCategory,
    PermanentError,
    TransientError,
)
from backend.core.recovery_events import (
    AttemptEvent,
    AttemptOutcome,
    BaseRecoveryListener,
    GiveUpEvent,
    RetryEvent,
)
from backend.core.retry_policy import Decision, GiveUpReason
from backend.testing import FakeClock

_REQUEST = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")


def rate_limited(retry_after: str | None = None) -> openai.RateLimitError:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    body = {"error": {"message": "Rate limit reached", "type": "requests", "code": None}}
    response = httpx2.Response(429, headers=headers, json=body, request=_REQUEST)
    return openai.RateLimitError("Rate limit reached", response=response, body=body["error"])


def auth_failed() -> openai.AuthenticationError:
    body = {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}
    response = httpx2.Response(401, json=body, request=_REQUEST)
    return openai.AuthenticationError("Incorrect API key", response=response, body=body["error"])


def upper_bound(low: float, high: float) -> float:
    """A jitter source that always draws the top of the range, so waits are predictable."""
    return high


class Recorder(BaseRecoveryListener):
    def __init__(self) -> None:
        self.attempts: list[AttemptEvent] = []
        self.retries: list[RetryEvent] = []
        self.give_ups: list[GiveUpEvent] = []

    def on_attempt(self, event: AttemptEvent) -> None:
        self.attempts.append(event)

    def on_retry(self, event: RetryEvent) -> None:
        self.retries.append(event)

    def on_give_up(self, event: GiveUpEvent) -> None:
        self.give_ups.append(event)


def failing(errors: list[BaseException], result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    """A sync function raising the given errors in turn, then returning ``result``."""
    calls = [0]

    def fn() -> str:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return result

    return fn, calls


def async_failing(errors: list[BaseException], result: str = "ok"):  # type: ignore[no-untyped-def]
    sync_fn, calls = failing(errors, result)

    async def fn() -> str:
        return sync_fn()

    return fn, calls


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def manager(clock: FakeClock, recorder: Recorder) -> ErrorRecoveryManager:
    return ErrorRecoveryManager(
        RecoveryConfig(), clock=clock, listeners=[recorder], rng=upper_bound
    )


def test_defaults_match_the_reference() -> None:
    config = RecoveryConfig()
    assert (config.max_retries, config.initial_wait, config.multiplier) == (3, 0.1, 2.0)
    assert (config.max_wait, config.attempt_timeout) == (10.0, 30.0)


def test_sync_transient_then_success_waits_exponentially(
    manager: ErrorRecoveryManager, clock: FakeClock
) -> None:
    fn, calls = failing([rate_limited(), rate_limited()])
    assert manager.execute_with_retry_sync(fn, context="validation") == "ok"
    assert calls[0] == 3
    assert clock.sleeps == pytest.approx([0.1, 0.2])


def test_sync_permanent_error_fails_at_once(
    manager: ErrorRecoveryManager, clock: FakeClock
) -> None:
    fn, calls = failing([auth_failed()])
    with pytest.raises(PermanentError) as caught:
        manager.execute_with_retry_sync(fn, context="validation")
    assert calls[0] == 1
    assert caught.value.attempts == 1
    assert caught.value.category is ErrorCategory.AUTH_ERROR
    assert "validation failed with auth_error (HTTP 401)" in caught.value.message
    assert clock.sleeps == []


async def test_async_retry_after_connection_error(manager: ErrorRecoveryManager) -> None:
    fn, calls = async_failing([ConnectionRefusedError("connection refused")])
    assert await manager.execute_with_retry(fn, context="code_review") == "ok"
    assert calls[0] == 2


async def test_exhausted_retries_raise_transient_error_with_attempts(
    manager: ErrorRecoveryManager, recorder: Recorder, clock: FakeClock
) -> None:
    fn, calls = async_failing([rate_limited() for _ in range(10)])
    with pytest.raises(TransientError) as caught:
        await manager.execute_with_retry(fn, context="code_review")
    assert calls[0] == 4  # max_retries=3 means up to four calls
    assert caught.value.attempts == 4
    assert caught.value.category is ErrorCategory.RATE_LIMIT
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4])
    assert [e.decision for e in recorder.attempts] == [Decision.RETRY] * 3 + [Decision.GIVE_UP]
    assert [e.wait for e in recorder.attempts] == pytest.approx([0.1, 0.2, 0.4, 0.0])
    assert recorder.give_ups[0].reason is GiveUpReason.EXHAUSTED


async def test_backoff_is_capped_by_max_wait(clock: FakeClock) -> None:
    config = RecoveryConfig(max_retries=6, initial_wait=1.0, max_wait=3.0)
    manager = ErrorRecoveryManager(config, clock=clock, rng=upper_bound)
    fn, _ = async_failing([TimeoutError() for _ in range(6)])
    assert await manager.execute_with_retry(fn) == "ok"
    assert clock.sleeps == pytest.approx([1.0, 2.0, 3.0, 3.0, 3.0, 3.0])


async def test_full_jitter_draws_within_the_backoff(clock: FakeClock) -> None:
    manager = ErrorRecoveryManager(
        RecoveryConfig(max_retries=3, budget_min_retries=1000), clock=clock
    )
    for _ in range(50):
        fn, _ = async_failing([TimeoutError(), TimeoutError(), TimeoutError()])
        await manager.execute_with_retry(fn)
    firsts, seconds, thirds = clock.sleeps[0::3], clock.sleeps[1::3], clock.sleeps[2::3]
    assert all(0 <= w <= 0.1 for w in firsts)
    assert all(0 <= w <= 0.2 for w in seconds)
    assert all(0 <= w <= 0.4 for w in thirds)
    assert len(set(clock.sleeps)) > 100  # really random, not a fixed schedule


async def test_retry_after_is_honoured_even_above_max_wait(
    manager: ErrorRecoveryManager, clock: FakeClock
) -> None:
    fn, _ = async_failing([rate_limited(retry_after="12")])
    assert await manager.execute_with_retry(fn) == "ok"
    assert clock.sleeps == [12.0]


async def test_retry_after_beyond_the_ceiling_fails_at_once(
    manager: ErrorRecoveryManager, clock: FakeClock
) -> None:
    fn, calls = async_failing([rate_limited(retry_after="3600")])
    with pytest.raises(TransientError) as caught:
        await manager.execute_with_retry(fn, context="review")
    assert calls[0] == 1
    assert clock.sleeps == []
    assert "longer than the configured ceiling" in caught.value.message


async def test_deadline_stops_retries_before_sleeping_past_it(
    manager: ErrorRecoveryManager, clock: FakeClock
) -> None:
    fn, calls = async_failing([rate_limited(retry_after="5")])
    with pytest.raises(TransientError) as caught:
        await manager.execute_with_retry(fn, deadline=clock.monotonic() + 2.0)
    assert calls[0] == 1
    assert clock.sleeps == []
    assert "deadline" in caught.value.message


async def test_deadline_shortens_the_attempt_timeout() -> None:
    manager = ErrorRecoveryManager(RecoveryConfig(attempt_timeout=30.0))

    async def hang() -> str:
        await asyncio.sleep(10)
        return "late"

    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        await manager.execute_with_retry(hang, deadline=time.monotonic() + 0.2)
    assert time.monotonic() - started < 1.0
    assert caught.value.category is ErrorCategory.TIMEOUT


async def test_attempt_timeout_is_transient_and_retried() -> None:
    manager = ErrorRecoveryManager(RecoveryConfig(max_retries=2, initial_wait=0.0))
    attempts = 0

    async def slow() -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(5)
        return "late"

    with pytest.raises(TransientError) as caught:
        await manager.execute_with_retry(slow, timeout_seconds=0.05)
    assert attempts == 3
    assert caught.value.category is ErrorCategory.TIMEOUT
    assert caught.value.attempts == 3


def test_blocked_sync_call_does_not_hang_past_its_timeout() -> None:
    manager = ErrorRecoveryManager(RecoveryConfig(max_retries=0))
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        manager.execute_with_retry_sync(lambda: time.sleep(3), timeout_seconds=0.1)
    assert time.monotonic() - started < 1.0
    assert caught.value.category is ErrorCategory.TIMEOUT


async def test_sync_api_works_inside_a_running_loop(clock: FakeClock) -> None:
    manager = ErrorRecoveryManager(clock=clock, rng=upper_bound)
    fn, calls = failing([TimeoutError()])
    assert manager.execute_with_retry_sync(fn) == "ok"
    assert calls[0] == 2


async def test_retry_budget_caps_retries_in_the_window(clock: FakeClock) -> None:
    config = RecoveryConfig(max_retries=3, budget_ratio=0.2, budget_min_retries=2)
    manager = ErrorRecoveryManager(config, clock=clock, rng=upper_bound)
    total_calls = 0
    outcomes = []
    for _ in range(5):
        fn, calls = async_failing([TimeoutError() for _ in range(10)])
        with pytest.raises(TransientError) as caught:
            await manager.execute_with_retry(fn)
        total_calls += calls[0]
        outcomes.append(caught.value.message)
    # Two retries were all the budget allowed for five calls (max(2, 0.2 * 5) = 2).
    assert total_calls == 5 + 2
    assert "retry budget" in outcomes[-1]
    assert manager.budget.retries_in_window == 2


async def test_retry_budget_refills_after_the_window(clock: FakeClock) -> None:
    config = RecoveryConfig(budget_ratio=0.0, budget_min_retries=1, budget_window=10.0)
    manager = ErrorRecoveryManager(config, clock=clock, rng=upper_bound)
    fn, calls = async_failing([TimeoutError(), TimeoutError()])
    with pytest.raises(TransientError):
        await manager.execute_with_retry(fn)
    assert calls[0] == 2
    clock.advance(11)
    fn, calls = async_failing([TimeoutError()])
    assert await manager.execute_with_retry(fn) == "ok"
    assert calls[0] == 2


async def test_open_breaker_refuses_without_calling(
    manager: ErrorRecoveryManager, recorder: Recorder, clock: FakeClock
) -> None:
    breaker = CircuitBreaker("openai:gpt-4o-mini", clock=clock)
    await breaker.force_open(actor="test")
    fn, calls = async_failing([])
    with pytest.raises(CircuitOpenError) as caught:
        await manager.execute_with_retry(fn, breaker=breaker)
    assert calls[0] == 0
    assert caught.value.breaker_key == "openai:gpt-4o-mini"
    assert caught.value.attempts == 0
    assert recorder.attempts[0].outcome is AttemptOutcome.REFUSED


async def test_failures_open_the_breaker_and_stop_the_retries(clock: FakeClock) -> None:
    manager = ErrorRecoveryManager(RecoveryConfig(max_retries=10), clock=clock, rng=upper_bound)
    breaker = CircuitBreaker("anthropic:claude", clock=clock, threshold=3)
    fn, calls = async_failing([TimeoutError() for _ in range(20)])
    with pytest.raises(TransientError) as caught:
        await manager.execute_with_retry(fn, breaker=breaker)
    assert calls[0] == 3  # the third failure opened the breaker: no sleeping toward it
    assert "breaker opened" in caught.value.message
    with pytest.raises(CircuitOpenError):
        await manager.execute_with_retry(fn, breaker=breaker)
    assert calls[0] == 3


async def test_permanent_errors_do_not_count_against_the_breaker(
    manager: ErrorRecoveryManager, clock: FakeClock
) -> None:
    breaker = CircuitBreaker("openai:gpt-4o", clock=clock, threshold=2)
    for _ in range(5):
        fn, _ = async_failing([auth_failed()])
        with pytest.raises(PermanentError):
            await manager.execute_with_retry(fn, breaker=breaker)
    assert (await breaker.snapshot()).consecutive_failures == 0


async def test_caller_deadline_does_not_count_against_the_breaker() -> None:
    manager = ErrorRecoveryManager(RecoveryConfig(max_retries=0))
    breaker = CircuitBreaker("openai:slow", threshold=1)

    async def hang() -> str:
        await asyncio.sleep(10)
        return "late"

    with pytest.raises(TransientError):
        await manager.execute_with_retry(hang, breaker=breaker, deadline=time.monotonic() + 0.05)
    snapshot = await breaker.snapshot()
    assert (snapshot.state.value, snapshot.consecutive_failures) == ("closed", 0)


async def test_cancellation_is_not_a_provider_failure(recorder: Recorder) -> None:
    manager = ErrorRecoveryManager(listeners=[recorder])
    breaker = CircuitBreaker("openai:cancelled", threshold=1)
    started = asyncio.Event()

    async def hang() -> str:
        started.set()
        await asyncio.sleep(10)
        return "late"

    task = asyncio.create_task(manager.execute_with_retry(hang, breaker=breaker))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await breaker.snapshot()).consecutive_failures == 0
    assert recorder.attempts[-1].classification is not None
    assert recorder.attempts[-1].classification.category is ErrorCategory.CANCELLED


async def test_concurrent_callers_each_retry_independently(clock: FakeClock) -> None:
    manager = ErrorRecoveryManager(clock=clock, rng=upper_bound)
    functions = [async_failing([ConnectionResetError("reset")]) for _ in range(3)]
    results = await asyncio.gather(*(manager.execute_with_retry(fn) for fn, _ in functions))
    assert results == ["ok", "ok", "ok"]
    assert [calls[0] for _, calls in functions] == [2, 2, 2]
