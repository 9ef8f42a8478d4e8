"""``bulwark serve`` (the first-start admin key, then the API under uvicorn) and ``bulwark
keys create``.

On first start (no API key in the database) a local admin key is created, printed once and
stored in ``settings.admin_key_file``; later starts say where that file is. A database that
cannot be reached at start is reported, and the service starts anyway (``/readyz`` says 503
until the database answers)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from backend.api.app import create_app
from backend.config import Settings
from backend.db.breaker_store import UNAVAILABLE
from backend.db.engine import create_engine
from backend.db.key_store import SqlApiKeyStore
from backend.db.migrate import upgrade_async
from backend.services.keys import KeyService, LocalAdminKey
from backend.tasks.model import ApiKey


async def ensure_admin_key(settings: Settings, path: Path) -> LocalAdminKey:
    """Migrate SQLite, then create the local admin key (in ``path``) if the database has
    no key."""
    engine = create_engine(settings.database_url)
    try:
        if engine.dialect.name == "sqlite":
            await upgrade_async(settings.database_url)
        keys = KeyService(SqlApiKeyStore(engine))
        return await keys.ensure_local_admin_key(path)
    finally:
        await engine.dispose()


def announce(local: LocalAdminKey) -> None:
    if local.secret is not None:
        print(
            "Created the first admin API key. It is shown only this once, and saved to "
            f"{local.path} (readable by you only):\n{local.secret}",
            flush=True,
        )
    elif local.file_exists:
        print(f"The local admin API key is in {local.path}", flush=True)
    else:
        print(
            f"API keys exist; the local admin key file {local.path} is absent. Create a key "
            "with: bulwark keys create --name NAME [--admin]",
            flush=True,
        )


async def _create_key(settings: Settings, name: str, *, admin: bool) -> tuple[str, ApiKey]:
    engine = create_engine(settings.database_url)
    try:
        if engine.dialect.name == "sqlite":
            await upgrade_async(settings.database_url)
        return await KeyService(SqlApiKeyStore(engine)).create(name, admin=admin)
    finally:
        await engine.dispose()


def create_key(settings: Settings, *, name: str, admin: bool = False) -> int:
    """Create a key and print it, alone, on the last line (shown only this once)."""
    secret, key = asyncio.run(_create_key(settings, name, admin=admin))
    kind = "an admin" if admin else "a client"
    print(f"Created {kind} key {key.name!r} (id {key.id}). It is shown only this once:")
    print(secret)
    return 0


def serve(settings: Settings, *, host: str, port: int, workers: bool = True) -> int:
    """Run the API until interrupted."""
    import uvicorn

    if not workers:
        settings = settings.model_copy(update={"embedded_workers": False})
    try:
        path = Path(settings.admin_key_file).absolute()
        announce(asyncio.run(ensure_admin_key(settings, path)))
    except UNAVAILABLE as exc:
        print(
            f"bulwark: the database is not reachable now ({exc}); starting anyway", file=sys.stderr
        )
    mode = "with embedded workers" if settings.embedded_workers else "without workers"
    print(f"Bulwark API on http://{host}:{port} ({mode})", flush=True)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep Bulwark's handlers: structured, redacted
        lifespan="on",
    )
    return 0


__all__ = ["announce", "create_key", "ensure_admin_key", "serve"]
