"""API keys: who is calling (authentication), creating keys, and the local admin key a
fresh installation starts with.

Rules, in domain words:

* A caller presents a secret. An active API key with that secret is that key's principal;
  the configured admin token (compared in constant time) is the principal ``admin-token``
  with admin rights. Anything else is unauthorized.
* Admin routes need an admin principal; a client key is forbidden there.
* On first start (no key in the database) a local admin key is created and written to the
  admin key file, readable by its owner only (file 0600, in a directory 0700 when that
  directory is created for it).
"""

from __future__ import annotations

import asyncio
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from backend.services.errors import ForbiddenError, UnauthorizedError
from backend.tasks.model import ApiKey, ApiKeyStore

ADMIN_TOKEN_PRINCIPAL = "admin-token"
LOCAL_ADMIN_KEY_NAME = "local-admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: ``id`` owns the tasks it submits; ``name`` is recorded as the actor
    of operator actions."""

    id: str
    name: str
    admin: bool


@dataclass(frozen=True, slots=True)
class LocalAdminKey:
    """The outcome of :meth:`KeyService.ensure_local_admin_key`: ``secret`` is set only when
    the key was created just now (show it once)."""

    path: Path
    secret: str | None
    file_exists: bool


class KeyService:
    """Authentication and key management on an :class:`ApiKeyStore`."""

    def __init__(self, store: ApiKeyStore, *, admin_token: str | None = None) -> None:
        self.store = store
        self._admin_token = admin_token.encode() if admin_token else None

    async def authenticate(self, secret: str | None) -> Principal:
        if not secret:
            raise UnauthorizedError("an API key is needed: send 'Authorization: Bearer <key>'")
        if self._admin_token is not None and hmac.compare_digest(
            secret.encode(), self._admin_token
        ):
            return Principal(ADMIN_TOKEN_PRINCIPAL, ADMIN_TOKEN_PRINCIPAL, admin=True)
        key = await self.store.authenticate(secret)
        if key is None or key.revoked:
            raise UnauthorizedError("the API key is not valid")
        return Principal(key.id, key.name, key.admin)

    @staticmethod
    def require_admin(principal: Principal) -> Principal:
        if not principal.admin:
            raise ForbiddenError("this needs an admin key or the admin token")
        return principal

    async def create(self, name: str, *, admin: bool = False) -> tuple[str, ApiKey]:
        """A new key: its secret (shown once) and its record."""
        name = name.strip()
        if not name:
            raise ValueError("a key needs a name")
        return await self.store.create(name, admin=admin)

    async def ensure_local_admin_key(self, path: Path) -> LocalAdminKey:
        """Create the first admin key and write it to ``path`` if the database has no key
        yet; otherwise leave everything as it is."""
        if await self.store.count() > 0:
            return LocalAdminKey(path, None, await asyncio.to_thread(path.is_file))
        secret, _ = await self.store.create(LOCAL_ADMIN_KEY_NAME, admin=True)
        await asyncio.to_thread(write_secret_file, path, secret)
        return LocalAdminKey(path, secret, True)


def write_secret_file(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path``, mode 0600; a directory created for it gets 0700."""
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    for directory in missing:
        directory.chmod(0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)  # an existing file keeps its mode on O_CREAT
        handle.write(secret + "\n")


def read_secret_file(path: Path) -> str | None:
    """The key stored in ``path``, or ``None`` when there is none."""
    try:
        secret = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return secret or None


__all__ = [
    "ADMIN_TOKEN_PRINCIPAL",
    "LOCAL_ADMIN_KEY_NAME",
    "KeyService",
    "LocalAdminKey",
    "Principal",
    "read_secret_file",
    "write_secret_file",
]
