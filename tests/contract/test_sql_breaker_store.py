"""The breaker store contract, run against :class:`SqlBreakerStore` on SQLite and PostgreSQL.

The stores read through no cache (``cache_seconds=0``) except in the cached SQLite variant,
which uses the contract's fake clock: a single process sees its own writes at once, so the
contract holds with the cache on as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from backend.core.breaker_state import BreakerConfig, BreakerStore
from backend.db.breaker_store import SqlBreakerStore
from backend.db.engine import create_engine
from backend.db.migrate import upgrade_async
from backend.testing import FakeClock
from tests.contract.breaker_store_contract import BreakerStoreContract


async def _store(url: str, clock: FakeClock, cache_seconds: float) -> AsyncIterator[BreakerStore]:
    await upgrade_async(url)
    engine = create_engine(url)
    store = SqlBreakerStore(engine, config=BreakerConfig(cache_seconds=cache_seconds), clock=clock)
    try:
        yield store
    finally:
        await store.aclose()
        await engine.dispose()


class TestSqliteBreakerStore(BreakerStoreContract):
    @pytest.fixture
    async def store(self, sqlite_url: str, clock: FakeClock) -> AsyncIterator[BreakerStore]:
        async for store in _store(sqlite_url, clock, cache_seconds=0):
            yield store


class TestCachedSqliteBreakerStore(BreakerStoreContract):
    @pytest.fixture
    async def store(self, sqlite_url: str, clock: FakeClock) -> AsyncIterator[BreakerStore]:
        async for store in _store(sqlite_url, clock, cache_seconds=1.0):
            yield store


@pytest.mark.postgres
class TestPostgresBreakerStore(BreakerStoreContract):
    @pytest.fixture
    async def store(self, postgres_url: str, clock: FakeClock) -> AsyncIterator[BreakerStore]:
        async for store in _store(postgres_url, clock, cache_seconds=0):
            yield store
