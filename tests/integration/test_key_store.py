"""API keys on SQLite and PostgreSQL: the secret is shown once and only its hash is kept."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from backend.db.engine import create_engine
from backend.db.key_store import SqlApiKeyStore, hash_secret
from backend.db.migrate import upgrade_async
from backend.db.models import ApiKeyRow
from backend.testing import FakeClock


@pytest.fixture
async def keys(database_url: str) -> AsyncIterator[SqlApiKeyStore]:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    try:
        yield SqlApiKeyStore(engine, clock=FakeClock())
    finally:
        await engine.dispose()


async def _rows(database_url: str) -> list[tuple[object, ...]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(select(ApiKeyRow.__table__))]
    finally:
        await engine.dispose()


async def test_create_shows_the_secret_once_and_stores_only_its_hash(
    keys: SqlApiKeyStore, database_url: str
) -> None:
    secret, key = await keys.create("ci bot")
    assert secret.startswith("bwk_") and len(secret) == 4 + 43
    assert (key.name, key.admin, key.revoked) == ("ci bot", False, False)
    assert key.prefix == secret[:12] and key.created_at.tzinfo is not None
    [row] = await _rows(database_url)
    assert secret not in [str(value) for value in row]
    assert hash_secret(secret) in row
    assert await keys.list() == [key]
    assert await keys.count() == 1


async def test_authenticate_good_bad_and_revoked(keys: SqlApiKeyStore) -> None:
    secret, key = await keys.create("client")
    other, other_key = await keys.create("other")
    assert await keys.authenticate(secret) == key
    assert await keys.authenticate(secret + "x") is None
    assert await keys.authenticate(secret[4:]) is None
    assert await keys.authenticate("") is None
    assert await keys.revoke(key.id)
    assert not await keys.revoke(key.id)
    assert await keys.authenticate(secret) is None
    assert await keys.authenticate(other) is not None
    assert {k.id: k.revoked for k in await keys.list()} == {key.id: True, other_key.id: False}
    assert await keys.count() == 1


async def test_admin_keys_say_so(keys: SqlApiKeyStore) -> None:
    secret, key = await keys.create("operator", admin=True)
    plain_secret, _ = await keys.create("client")
    authenticated = await keys.authenticate(secret)
    assert key.admin and authenticated is not None and authenticated.admin
    plain = await keys.authenticate(plain_secret)
    assert plain is not None and not plain.admin
    assert secret != plain_secret
