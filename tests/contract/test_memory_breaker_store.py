"""The breaker store contract, run against the in-process store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from backend.core.breaker_state import BreakerEvent, BreakerSnapshot, BreakerState, BreakerStore
from backend.core.memory_breaker_store import MemoryBreakerStore
from backend.testing import FakeClock
from tests.contract.breaker_store_contract import KEY, BreakerStoreContract


class TestMemoryBreakerStore(BreakerStoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[BreakerStore]:
        yield MemoryBreakerStore()

    async def test_keeps_only_the_newest_events(self, clock: FakeClock) -> None:
        store = MemoryBreakerStore(max_events=3)
        snapshot = BreakerSnapshot(KEY)
        for i in range(5):
            event = BreakerEvent(
                KEY, BreakerState.CLOSED, BreakerState.OPEN, f"e{i}", "system", clock.now()
            )
            stored = await store.compare_and_set(snapshot, BreakerSnapshot(KEY), event)
            assert stored is not None
            snapshot = stored
        assert [e.reason for e in await store.events(KEY)] == ["e4", "e3", "e2"]

    async def test_refuses_a_write_that_mixes_keys(self) -> None:
        store = MemoryBreakerStore()
        with pytest.raises(ValueError, match="one key"):
            await store.compare_and_set(BreakerSnapshot(KEY), BreakerSnapshot("other:key"))
