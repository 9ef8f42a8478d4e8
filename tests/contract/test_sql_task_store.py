"""The task store contract, run against :class:`SqlTaskStore` on SQLite and PostgreSQL. Each
store the contract opens has an engine of its own, as separate processes would."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.clock import Clock
from backend.db.engine import create_engine
from backend.db.migrate import upgrade_async
from backend.db.task_store import SqlTaskStore
from backend.tasks.model import TaskStore
from tests.contract.task_store_contract import OpenStore, TaskStoreContract


async def _open_stores(url: str) -> AsyncIterator[OpenStore]:
    await upgrade_async(url)
    engines: list[AsyncEngine] = []

    def open_store(clock: Clock) -> TaskStore:
        engine = create_engine(url)
        engines.append(engine)
        return SqlTaskStore(engine, clock=clock)

    try:
        yield open_store
    finally:
        for engine in engines:
            await engine.dispose()


class TestSqliteTaskStore(TaskStoreContract):
    @pytest.fixture
    async def open_store(self, sqlite_url: str) -> AsyncIterator[OpenStore]:
        async for factory in _open_stores(sqlite_url):
            yield factory


@pytest.mark.postgres
class TestPostgresTaskStore(TaskStoreContract):
    @pytest.fixture
    async def open_store(self, postgres_url: str) -> AsyncIterator[OpenStore]:
        async for factory in _open_stores(postgres_url):
            yield factory
