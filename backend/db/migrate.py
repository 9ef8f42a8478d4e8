"""Schema migrations, run programmatically: ``bulwark db upgrade`` calls :func:`upgrade`.

Alembic owns the schema; its environment lives in ``migrations/`` at the repository root and
needs no ini file: the URL is handed over through the Alembic ``Config``.

:func:`upgrade` and :func:`downgrade` are synchronous and run the migration in an event loop
of their own (``asyncio.run`` inside ``migrations/env.py``), so they must not be called from a
thread whose event loop is running. From async code, use :func:`upgrade_async` /
:func:`downgrade_async`, which run them in a worker thread.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

#: The Alembic environment: ``migrations/`` beside ``backend/``.
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic ``Config`` for ``url``, without an ini file and without touching logging."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["url"] = url
    config.attributes["configure_logging"] = False
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (default: the latest).

    Not from inside a running event loop: use :func:`upgrade_async` there.
    """
    _check_no_running_loop("upgrade")
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"`` drops every table).

    Not from inside a running event loop: use :func:`downgrade_async` there.
    """
    _check_no_running_loop("downgrade")
    command.downgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    """:func:`upgrade`, run in a worker thread so the caller's event loop stays free."""
    await asyncio.to_thread(upgrade, url, revision)


async def downgrade_async(url: str, revision: str) -> None:
    """:func:`downgrade`, run in a worker thread so the caller's event loop stays free."""
    await asyncio.to_thread(downgrade, url, revision)


def _check_no_running_loop(name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"{name}() runs its own event loop and cannot be called from a running one; "
        f"await {name}_async() instead"
    )


__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "downgrade",
    "downgrade_async",
    "upgrade",
    "upgrade_async",
]
