"""The migrations equal the models, on SQLite and PostgreSQL, and they go down and up again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from backend.db.engine import create_engine
from backend.db.migrate import downgrade_async, upgrade, upgrade_async
from backend.db.models import Base

BULWARK_TABLES = {"circuit_breakers", "breaker_events", "llm_calls", "llm_attempts"}


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    diff: list[Any] = compare_metadata(context, Base.metadata)
    return diff


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _run(url: str, fn: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(fn)
    finally:
        await engine.dispose()


async def test_upgrade_to_head_matches_the_models(database_url: str) -> None:
    await upgrade_async(database_url)

    assert await _run(database_url, _diff) == []
    assert await _run(database_url, _tables) >= BULWARK_TABLES


async def test_downgrade_to_base_and_up_again(database_url: str) -> None:
    await upgrade_async(database_url)

    await downgrade_async(database_url, "base")
    assert await _run(database_url, _tables) & BULWARK_TABLES == set()

    await upgrade_async(database_url)
    assert await _run(database_url, _diff) == []


def test_upgrade_refuses_a_running_event_loop(sqlite_url: str) -> None:
    async def call_from_loop() -> None:
        upgrade(sqlite_url)

    with pytest.raises(RuntimeError, match="upgrade_async"):
        asyncio.run(call_from_loop())
