"""Engines and sessions: the one place that knows how to connect to SQLite or PostgreSQL.

SQLite gets WAL journaling (readers never block the writer), a busy timeout, enforced foreign
keys and SQLAlchemy-controlled transactions: every transaction starts with ``BEGIN``, and a
writer that reads before it writes can ask for ``BEGIN IMMEDIATE`` (take the write lock at
once, so two such writers queue on the busy timeout instead of failing on a lock upgrade)::

    async with engine.connect() as conn:
        await conn.execution_options(**WRITE_TRANSACTION)
        async with conn.begin():
            ...

PostgreSQL gets a small pre-pinged pool and a short connect timeout, so an unreachable server
fails fast instead of stalling callers. Nothing here runs at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

#: Execution option that makes a SQLite transaction start with ``BEGIN IMMEDIATE``; other
#: databases ignore it.
BEGIN_OPTION = "bulwark_sqlite_begin"
WRITE_TRANSACTION: dict[str, Any] = {BEGIN_OPTION: "IMMEDIATE"}

SQLITE_BUSY_TIMEOUT_MS = 5000


def create_engine(
    url: str,
    *,
    connect_timeout: float = 3.0,
    pool_size: int = 5,
    foreign_keys: bool = True,
    echo: bool = False,
) -> AsyncEngine:
    """An :class:`AsyncEngine` for ``url`` (``sqlite+aiosqlite://...`` or
    ``postgresql+asyncpg://...``). A relative SQLite path is resolved against the current
    directory now, and its parent directories are created.

    ``connect_timeout`` bounds a PostgreSQL (asyncpg) connection attempt, in seconds.
    ``foreign_keys=False`` leaves SQLite's foreign keys unenforced, as migrations need while
    they rebuild tables; PostgreSQL always enforces them.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        parsed = _sqlite_file_url(parsed)
        engine = _create_async_engine(parsed, echo=echo)
        _install_sqlite_hooks(engine, foreign_keys=foreign_keys)
        return engine
    options: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_size": pool_size,
        "max_overflow": pool_size,
        "pool_recycle": 1800,
    }
    if parsed.get_driver_name() == "asyncpg":
        options["connect_args"] = {"timeout": connect_timeout}
    return _create_async_engine(parsed, echo=echo, **options)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions bound to ``engine`` whose objects stay usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _sqlite_file_url(url: URL) -> URL:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return url
    path = Path(database).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return url.set(database=str(path))


def _install_sqlite_hooks(engine: AsyncEngine, *, foreign_keys: bool) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Take BEGIN away from the sqlite3 driver: SQLAlchemy emits it (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


__all__ = [
    "BEGIN_OPTION",
    "SQLITE_BUSY_TIMEOUT_MS",
    "WRITE_TRANSACTION",
    "create_engine",
    "create_sessionmaker",
]
