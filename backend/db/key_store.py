"""API keys on a SQL database (``api_keys``).

A key is ``bwk_`` followed by 43 URL-safe characters (``secrets.token_urlsafe(32)``, 256
bits). The secret is shown once, by :meth:`SqlApiKeyStore.create`, and never stored: the table
keeps its SHA-256 (hex), which :meth:`SqlApiKeyStore.authenticate` looks up, and its first
characters (``prefix``) so that people can tell keys apart. A fast hash is enough for secrets
with 256 bits of entropy (nothing to brute-force); a revoked key authenticates no more.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import uuid
from typing import cast

from sqlalchemy import RowMapping, Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.clock import SYSTEM_CLOCK, Clock
from backend.db.models import ApiKeyRow
from backend.tasks.model import ApiKey

KEY_PREFIX = "bwk_"
#: How many leading characters of a secret are kept for display.
DISPLAY_CHARS = 12

_KEYS = cast(Table, ApiKeyRow.__table__)


def hash_secret(secret: str) -> str:
    """The stored form of a key: SHA-256 of the secret, in hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class SqlApiKeyStore:
    """An :class:`~backend.tasks.model.ApiKeyStore` on SQLite or PostgreSQL (see module)."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._engine = engine
        self._clock = clock

    async def create(self, name: str, *, admin: bool = False) -> tuple[str, ApiKey]:
        secret = new_secret()
        key = ApiKey(
            id=str(uuid.uuid4()),
            name=name,
            admin=admin,
            created_at=self._clock.now(),
            prefix=secret[:DISPLAY_CHARS],
        )
        values = {
            "id": key.id,
            "name": key.name,
            "key_hash": hash_secret(secret),
            "prefix": key.prefix,
            "admin": key.admin,
            "created_at": key.created_at,
            "revoked": False,
        }
        async with self._engine.begin() as conn:
            await conn.execute(insert(_KEYS).values(values))
        return secret, key

    async def authenticate(self, secret: str) -> ApiKey | None:
        """The key whose secret this is, unless it is unknown or revoked."""
        if not secret.startswith(KEY_PREFIX):
            return None
        query = select(_KEYS).where(
            _KEYS.c.key_hash == hash_secret(secret), _KEYS.c.revoked.is_(False)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _key(row._mapping) if row is not None else None

    async def list(self) -> builtins.list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        query = select(_KEYS).order_by(_KEYS.c.created_at, _KEYS.c.id)
        async with self._engine.connect() as conn:
            return [_key(row._mapping) for row in await conn.execute(query)]

    async def count(self) -> int:
        """How many keys are usable (not revoked)."""
        query = select(func.count()).select_from(_KEYS).where(_KEYS.c.revoked.is_(False))
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key for good; ``False`` if there is no such key or it was revoked."""
        statement = (
            update(_KEYS)
            .where(_KEYS.c.id == key_id, _KEYS.c.revoked.is_(False))
            .values(revoked=True)
        )
        async with self._engine.begin() as conn:
            result = await conn.execute(statement)
        return bool(result.rowcount == 1)


def _key(row: RowMapping) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        admin=bool(row["admin"]),
        created_at=row["created_at"],
        revoked=bool(row["revoked"]),
        prefix=row["prefix"],
    )


__all__ = ["DISPLAY_CHARS", "KEY_PREFIX", "SqlApiKeyStore", "hash_secret", "new_secret"]
