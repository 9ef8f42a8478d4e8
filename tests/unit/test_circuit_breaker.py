"""The circuit breaker over the in-memory store, with a fake clock: the reference scenarios,
the error it raises, operator actions, cancellations, lost races and listeners."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from backend.core.breaker_state import (
    BreakerConfig,
    BreakerEvent,
    BreakerSnapshot,
    BreakerState,
)
from backend.core.circuit_breaker import CircuitBreaker, Permit
from backend.core.errors import CircuitOpenError, Classification, ErrorCategory
from backend.core.memory_breaker_store import MemoryBreakerStore
from backend.testing import FakeClock

KEY = "anthropic:claude-sonnet"
OVERLOADED = Classification(ErrorCategory.OVERLOADED, True, status_code=529, message="busy")
BAD_REQUEST = Classification(ErrorCategory.INVALID_REQUEST, False, status_code=400)


class ProviderError(Exception):
    pass


class CountingStore(MemoryBreakerStore):
    """The memory store, counting calls; ``lose_next`` makes that many writes lose a race
    to a competing writer (which bumps the stored version first)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {"get": 0, "refresh": 0, "compare_and_set": 0}
        self.lose_next = 0

    async def get(self, key: str) -> BreakerSnapshot:
        self.calls["get"] += 1
        return await super().get(key)

    async def refresh(self, key: str) -> BreakerSnapshot:
        self.calls["refresh"] += 1
        return await MemoryBreakerStore.get(self, key)

    async def compare_and_set(
        self,
        expected: BreakerSnapshot,
        new: BreakerSnapshot,
        event: BreakerEvent | None = None,
    ) -> BreakerSnapshot | None:
        self.calls["compare_and_set"] += 1
        if self.lose_next:
            self.lose_next -= 1
            current = await MemoryBreakerStore.get(self, expected.key)
            await super().compare_and_set(current, current)  # someone else wrote first
        return await super().compare_and_set(expected, new, event)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def breaker(store: CountingStore, clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(KEY, store=store, clock=clock)


async def call(breaker: CircuitBreaker, provider: Callable[[], Awaitable[str]]) -> str:
    """How a caller drives the breaker around one provider call."""
    permit = await breaker.acquire()
    try:
        result = await provider()
    except ProviderError:
        await breaker.record_failure(permit, OVERLOADED)
        raise
    except asyncio.CancelledError:
        await breaker.release(permit)
        raise
    await breaker.record_success(permit)
    return result


class Provider:
    def __init__(self) -> None:
        self.calls = 0
        self.failing = True

    async def __call__(self) -> str:
        self.calls += 1
        if self.failing:
            raise ProviderError("overloaded")
        return "ok"


async def test_records_failures_opens_after_threshold_and_refuses_without_calling(
    breaker: CircuitBreaker,
) -> None:
    provider = Provider()
    for _ in range(4):
        with pytest.raises(ProviderError):
            await call(breaker, provider)
    assert (await breaker.snapshot()).state is BreakerState.CLOSED
    with pytest.raises(ProviderError):
        await call(breaker, provider)  # the 5th consecutive transient failure
    assert (await breaker.snapshot()).state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        await call(breaker, provider)
    assert provider.calls == 5


async def test_a_success_resets_the_run_of_failures(breaker: CircuitBreaker) -> None:
    provider = Provider()
    for _ in range(4):
        with pytest.raises(ProviderError):
            await call(breaker, provider)
    provider.failing = False
    assert await call(breaker, provider) == "ok"
    assert (await breaker.snapshot()).consecutive_failures == 0
    provider.failing = True
    for _ in range(4):
        with pytest.raises(ProviderError):
            await call(breaker, provider)
    assert (await breaker.snapshot()).state is BreakerState.CLOSED


async def test_permanent_failures_do_not_count(breaker: CircuitBreaker) -> None:
    for _ in range(10):
        await breaker.record_failure(await breaker.acquire(), BAD_REQUEST)
    assert (await breaker.snapshot()).state is BreakerState.CLOSED


async def test_closed_calls_read_once_and_write_nothing(
    breaker: CircuitBreaker, store: CountingStore
) -> None:
    for _ in range(3):
        await breaker.record_success(await breaker.acquire())
    assert store.calls == {"get": 6, "refresh": 0, "compare_and_set": 0}


async def test_snapshot_reads_the_cache_unless_asked_for_fresh_state(
    breaker: CircuitBreaker, store: CountingStore
) -> None:
    await breaker.snapshot()
    assert (store.calls["get"], store.calls["refresh"]) == (1, 0)
    await breaker.snapshot(fresh=True)
    assert (store.calls["get"], store.calls["refresh"]) == (1, 1)


async def test_circuit_open_error_says_which_target_and_when(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(5):
        await breaker.record_failure(await breaker.acquire(), OVERLOADED)
    opened_at = clock.now()
    clock.advance(10)
    with pytest.raises(CircuitOpenError) as refused:
        await breaker.acquire()
    error = refused.value
    assert error.breaker_key == KEY
    assert error.retry_at == opened_at + timedelta(seconds=60)
    assert error.category is ErrorCategory.CIRCUIT_OPEN
    assert KEY in error.message and "open since 2026-01-01T00:00:00+00:00" in error.message
    assert "2026-01-01T00:01:00+00:00" in error.message and "overloaded" in error.message


async def test_force_open_stays_open_past_the_open_time_until_reset(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    await breaker.force_open(actor="ops@example")
    clock.advance(24 * 3600)
    with pytest.raises(CircuitOpenError) as refused:
        await breaker.acquire()
    assert refused.value.retry_at is None and "forced open by an operator" in str(refused.value)
    snapshot = await breaker.reset(actor="ops@example")
    assert snapshot.state is BreakerState.CLOSED
    assert not (await breaker.acquire()).probe
    assert [(e.reason, e.actor) for e in await breaker.events()] == [
        ("reset", "ops@example"),
        ("forced_open", "ops@example"),
    ]


async def test_cancelled_calls_count_nothing(breaker: CircuitBreaker) -> None:
    async def hangs() -> str:
        await asyncio.Event().wait()
        return "never"

    for _ in range(10):
        task = asyncio.create_task(call(breaker, hangs))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert (await breaker.snapshot()) == BreakerSnapshot(KEY)


async def test_releasing_a_probe_lets_the_next_probe_through(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(5):
        await breaker.record_failure(await breaker.acquire(), OVERLOADED)
    clock.advance(60)
    probe = await breaker.acquire()
    assert probe.probe
    with pytest.raises(CircuitOpenError, match="half-open"):
        await breaker.acquire()
    await breaker.release(probe)
    assert (await breaker.snapshot()).state is BreakerState.HALF_OPEN
    await breaker.record_success(await breaker.acquire())
    assert (await breaker.snapshot()).state is BreakerState.CLOSED


async def test_a_lost_race_is_decided_again_on_fresh_state(
    breaker: CircuitBreaker, store: CountingStore
) -> None:
    permit = await breaker.acquire()
    store.lose_next = 2
    await breaker.record_failure(permit, OVERLOADED)
    assert (await breaker.snapshot()).consecutive_failures == 1
    assert store.calls["compare_and_set"] == 3


async def test_gives_up_quietly_when_it_keeps_losing(
    breaker: CircuitBreaker, store: CountingStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.lose_next = 1000
    with caplog.at_level(logging.WARNING):
        await breaker.record_failure(await breaker.acquire(), OVERLOADED)
    assert "gave up" in caplog.text
    with pytest.raises(RuntimeError, match="kept refusing"):
        await breaker.reset()


async def test_transition_listeners_hear_every_stored_event(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    heard: list[str] = []
    breaker.on_transition.append(lambda event: heard.append(event.reason))

    def broken(event: BreakerEvent) -> None:
        raise RuntimeError("metrics are down")

    breaker.on_transition.append(broken)
    for _ in range(5):
        await breaker.record_failure(await breaker.acquire(), OVERLOADED)
    clock.advance(60)
    await breaker.record_success(await breaker.acquire())
    await breaker.reset()
    assert heard == ["failure_threshold", "open_time_elapsed", "probe_succeeded", "reset"]


async def test_keyword_arguments_override_the_config() -> None:
    config = BreakerConfig(threshold=9, open_seconds=5.0, probe_lease_seconds=7.0)
    breaker = CircuitBreaker(KEY, config=config, threshold=2, half_open_max_calls=3)
    assert breaker.config == BreakerConfig(
        threshold=2, open_seconds=5.0, half_open_max_calls=3, probe_lease_seconds=7.0
    )
    assert CircuitBreaker(KEY).config == BreakerConfig()
    assert breaker.key == KEY


async def test_a_permit_belongs_to_its_breaker(breaker: CircuitBreaker) -> None:
    with pytest.raises(ValueError, match="permit"):
        await breaker.record_success(Permit("openai:gpt-4o"))
