"""The behaviour every :class:`~backend.core.breaker_state.BreakerStore` must show, written
once and run against every implementation.

To run it on a store, subclass :class:`BreakerStoreContract` in a ``test_*.py`` file and
override the ``store`` fixture (fresh, empty storage per test)::

    class TestSqliteBreakerStore(BreakerStoreContract):
        @pytest.fixture
        async def store(self, sqlite_url: str) -> AsyncIterator[BreakerStore]:
            ...

Stored state is asserted through ``refresh`` (a shared store's ``get`` may be cached).
Timestamps must come back as the same timezone-aware instants that were written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest

from backend.core.breaker_state import (
    BreakerConfig,
    BreakerEvent,
    BreakerSnapshot,
    BreakerState,
    BreakerStore,
)
from backend.core.circuit_breaker import CircuitBreaker, Permit
from backend.core.errors import CircuitOpenError, Classification, ErrorCategory
from backend.testing import FakeClock

KEY = "openai:gpt-4o"
TRANSIENT = Classification(ErrorCategory.SERVER_ERROR, True, status_code=500, message="boom")


class BreakerStoreContract:
    """Not collected by itself (no ``Test`` prefix); subclasses provide ``store``."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[BreakerStore]:
        raise NotImplementedError("a BreakerStoreContract subclass must override `store`")
        yield  # pragma: no cover  (makes this an async generator, like real fixtures)

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @staticmethod
    def breaker(
        store: BreakerStore, clock: FakeClock, *, half_open_max_calls: int = 1
    ) -> CircuitBreaker:
        config = BreakerConfig(threshold=5, open_seconds=60.0, probe_lease_seconds=120.0)
        return CircuitBreaker(
            KEY, store=store, clock=clock, config=config, half_open_max_calls=half_open_max_calls
        )

    @staticmethod
    def event(key: str, clock: FakeClock, reason: str) -> BreakerEvent:
        return BreakerEvent(
            key, BreakerState.CLOSED, BreakerState.OPEN, reason, "system", clock.now()
        )

    # -- the store itself ---------------------------------------------------------------

    async def test_unknown_key_is_closed_at_version_0(self, store: BreakerStore) -> None:
        for read in (store.get, store.refresh):
            snapshot = await read("nobody:never")
            assert snapshot == BreakerSnapshot(key="nobody:never")
        assert await store.list() == []
        assert await store.events("nobody:never") == []

    async def test_compare_and_set_bumps_version_and_persists(
        self, store: BreakerStore, clock: FakeClock
    ) -> None:
        fresh = await store.refresh(KEY)
        opened = BreakerSnapshot(
            key=KEY,
            state=BreakerState.OPEN,
            consecutive_failures=5,
            opened_at=clock.now(),
            retry_at=clock.now() + timedelta(seconds=60),
            last_error="boom",
            last_category="server_error",
            updated_at=clock.now(),
        )
        stored = await store.compare_and_set(fresh, opened)
        assert stored == replace(opened, version=1)
        assert await store.refresh(KEY) == stored
        assert await store.get(KEY) == stored

        closed = BreakerSnapshot(key=KEY, updated_at=clock.now(), version=stored.version)
        again = await store.compare_and_set(stored, closed)
        assert again is not None and again.version == 2
        assert (await store.refresh(KEY)).state is BreakerState.CLOSED

    async def test_stale_version_stores_nothing(
        self, store: BreakerStore, clock: FakeClock
    ) -> None:
        fresh = await store.refresh(KEY)
        first = await store.compare_and_set(fresh, BreakerSnapshot(KEY, consecutive_failures=1))
        assert first is not None
        loser = BreakerSnapshot(KEY, consecutive_failures=9)
        assert await store.compare_and_set(fresh, loser, self.event(KEY, clock, "x")) is None
        assert await store.refresh(KEY) == first
        assert await store.events(KEY) == []

    async def test_events_are_recorded_with_the_write_newest_first(
        self, store: BreakerStore, clock: FakeClock
    ) -> None:
        snapshot = await store.refresh(KEY)
        written = []
        for reason in ("first", "second", "third"):
            event = replace(self.event(KEY, clock, reason), category="timeout", message="slow")
            new = BreakerSnapshot(KEY, consecutive_failures=snapshot.version + 1)
            stored = await store.compare_and_set(snapshot, new, event)
            assert stored is not None
            snapshot = stored
            written.append(event)
            if reason != "second":  # two events at the same instant keep insertion order
                clock.advance(1)
        assert await store.events(KEY) == written[::-1]
        assert await store.events(KEY, limit=2) == written[:0:-1]
        assert await store.events("other:key") == []

    async def test_list_is_ordered_by_key(self, store: BreakerStore) -> None:
        for key in ("b:2", "a:1", "c:3"):
            assert await store.compare_and_set(BreakerSnapshot(key), BreakerSnapshot(key))
        assert [s.key for s in await store.list()] == ["a:1", "b:2", "c:3"]

    @pytest.mark.parametrize("existing", [False, True], ids=["fresh-key", "existing-key"])
    async def test_race_exactly_one_writer_wins(
        self, store: BreakerStore, clock: FakeClock, existing: bool
    ) -> None:
        expected = await store.refresh(KEY)
        if existing:
            stored = await store.compare_and_set(expected, BreakerSnapshot(KEY))
            assert stored is not None
            expected = stored

        async def attempt(i: int) -> BreakerSnapshot | None:
            new = BreakerSnapshot(KEY, consecutive_failures=i + 1, version=expected.version)
            return await store.compare_and_set(expected, new, self.event(KEY, clock, f"w{i}"))

        results = await asyncio.gather(*(attempt(i) for i in range(20)))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        assert winners[0].version == expected.version + 1
        assert await store.refresh(KEY) == winners[0]
        events = await store.events(KEY)
        assert [e.reason for e in events] == [f"w{winners[0].consecutive_failures - 1}"]

    # -- a whole breaker on this store ----------------------------------------------------

    async def open_breaker(self, breaker: CircuitBreaker) -> None:
        for _ in range(breaker.config.threshold):
            await breaker.record_failure(await breaker.acquire(), TRANSIENT)

    async def test_threshold_opens_and_open_refuses(
        self, store: BreakerStore, clock: FakeClock
    ) -> None:
        breaker = self.breaker(store, clock)
        for _ in range(4):
            await breaker.record_failure(await breaker.acquire(), TRANSIENT)
        assert (await store.refresh(KEY)).state is BreakerState.CLOSED
        await breaker.record_failure(await breaker.acquire(), TRANSIENT)
        stored = await store.refresh(KEY)
        assert stored.state is BreakerState.OPEN
        assert stored.retry_at == clock.now() + timedelta(seconds=60)
        with pytest.raises(CircuitOpenError) as refused:
            await breaker.acquire()
        assert refused.value.retry_at == stored.retry_at
        [event] = await store.events(KEY)
        assert (event.reason, event.actor, event.category) == (
            "failure_threshold",
            "system",
            "server_error",
        )

    @pytest.mark.parametrize("max_calls", [1, 3])
    async def test_after_open_time_exactly_max_calls_probes_of_20(
        self, store: BreakerStore, clock: FakeClock, max_calls: int
    ) -> None:
        await self.open_breaker(self.breaker(store, clock, half_open_max_calls=max_calls))
        clock.advance(60)
        fleet = [self.breaker(store, clock, half_open_max_calls=max_calls) for _ in range(20)]
        results = await asyncio.gather(*(b.acquire() for b in fleet), return_exceptions=True)
        permits = [r for r in results if isinstance(r, Permit)]
        assert len(permits) == max_calls and all(p.probe for p in permits)
        assert all(isinstance(r, CircuitOpenError) for r in results if r not in permits)
        stored = await store.refresh(KEY)
        assert (stored.state, stored.probes_in_flight) == (BreakerState.HALF_OPEN, max_calls)
        assert (await store.events(KEY))[0].reason == "open_time_elapsed"

    async def test_probe_success_closes(self, store: BreakerStore, clock: FakeClock) -> None:
        breaker = self.breaker(store, clock)
        await self.open_breaker(breaker)
        clock.advance(60)
        await breaker.record_success(await breaker.acquire())
        stored = await store.refresh(KEY)
        assert (stored.state, stored.consecutive_failures) == (BreakerState.CLOSED, 0)
        assert (await store.events(KEY))[0].reason == "probe_succeeded"
        assert not (await breaker.acquire()).probe

    async def test_probe_failure_reopens(self, store: BreakerStore, clock: FakeClock) -> None:
        breaker = self.breaker(store, clock)
        await self.open_breaker(breaker)
        clock.advance(60)
        await breaker.record_failure(await breaker.acquire(), TRANSIENT)
        stored = await store.refresh(KEY)
        assert stored.state is BreakerState.OPEN
        assert stored.retry_at == clock.now() + timedelta(seconds=60)
        assert (await store.events(KEY))[0].reason == "probe_failed"
        with pytest.raises(CircuitOpenError):
            await breaker.acquire()

    async def test_expired_probe_reservation_lets_a_new_probe_through(
        self, store: BreakerStore, clock: FakeClock
    ) -> None:
        breaker = self.breaker(store, clock)
        await self.open_breaker(breaker)
        clock.advance(60)
        stale = await breaker.acquire()  # its process "dies": no outcome is ever reported
        with pytest.raises(CircuitOpenError):
            await breaker.acquire()
        clock.advance(121)
        fresh = await breaker.acquire()
        assert fresh.probe and fresh.lease_expires_at != stale.lease_expires_at
        assert (await store.events(KEY))[0].reason == "probe_expired"
        await breaker.release(stale)  # too late: must not free the new probe's slot
        with pytest.raises(CircuitOpenError):
            await breaker.acquire()

    async def test_reset_and_force_open_record_the_actor(
        self, store: BreakerStore, clock: FakeClock
    ) -> None:
        breaker = self.breaker(store, clock)
        await breaker.force_open(actor="alice")
        clock.advance(3600)
        with pytest.raises(CircuitOpenError) as refused:
            await breaker.acquire()
        assert refused.value.retry_at is None
        assert (await store.refresh(KEY)).forced_open
        await breaker.reset(actor="bob")
        assert (await store.refresh(KEY)).state is BreakerState.CLOSED
        await breaker.reset(actor="carol")  # resetting a closed breaker is still recorded
        events = await breaker.events()
        assert [(e.reason, e.actor) for e in events] == [
            ("reset", "carol"),
            ("reset", "bob"),
            ("forced_open", "alice"),
        ]
        assert not (await breaker.acquire()).probe
