"""Alembic environment for Bulwark: async engines (SQLAlchemy's ``run_sync`` pattern), batch
mode on SQLite, and the models' metadata as the target.

The database URL comes, in this order, from ``config.attributes["url"]`` (set by
:func:`backend.db.migrate.upgrade`), the ``sqlalchemy.url`` option, or ``Settings()``. Online
migrations run in their own event loop (``asyncio.run``), so they must not be started from a
thread whose event loop is running; ``backend.db.migrate.upgrade_async`` uses a worker thread.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from backend.db.engine import create_engine
from backend.db.models import Base

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    from backend.config import Settings

    return Settings().database_url


def _configure(**options: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=True,
        **options,
    )


def run_migrations_offline() -> None:
    """Emit the migrations as SQL (``alembic upgrade --sql``) without connecting."""
    _configure(url=_database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    # Bulwark's engines issue BEGIN themselves, also on SQLite: DDL is transactional there too,
    # so a failing migration leaves the database as it was.
    _configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    # Foreign keys off on SQLite: batch migrations rebuild tables, which would cascade.
    engine = create_engine(_database_url(), foreign_keys=False, pool_size=1)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
