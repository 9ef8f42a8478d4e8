"""Fixtures shared by every test: a clean environment, and real databases (a SQLite file per
test, and a PostgreSQL database per test session on the server at 127.0.0.1:5432)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

pytest_plugins = ["tests.fakes.fixtures"]

PG_HOST = os.environ.get("BULWARK_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BULWARK_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("BULWARK_TEST_PG_USER", "postgres")

_ENV_PREFIXES = ("BULWARK_", "OPENAI_", "ANTHROPIC_")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's provider keys or Bulwark settings, nor a stray .env."""
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES) and not name.startswith("BULWARK_TEST_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'bulwark.db'}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _create_pg_database() -> str:
    name = f"bulwark_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is needed at {PG_HOST}:{PG_PORT} (user {PG_USER}, trust auth) and is "
            f"not reachable: {exc}. Start it with "
            "'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start'.",
            pytrace=False,
        )
    return name


def _drop_pg_database(name: str) -> None:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = _create_pg_database()
    try:
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        _drop_pg_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs a test once on SQLite and once on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url
