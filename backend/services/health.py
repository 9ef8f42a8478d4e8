"""Readiness: the service is ready when its database answers within a short time."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.breaker_store import UNAVAILABLE
from backend.services.errors import DatabaseUnavailableError

READY_TIMEOUT_SECONDS = 3.0
RETRY_AFTER_SECONDS = 5


class HealthService:
    def __init__(self, engine: AsyncEngine, *, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        self._engine = engine
        self._timeout = timeout

    async def check_database(self) -> None:
        """Return when ``SELECT 1`` succeeds; raise :class:`DatabaseUnavailableError`."""
        try:
            async with asyncio.timeout(self._timeout), self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except UNAVAILABLE as exc:
            raise DatabaseUnavailableError(
                f"the database is not reachable ({type(exc).__name__})", RETRY_AFTER_SECONDS
            ) from None


__all__ = ["RETRY_AFTER_SECONDS", "HealthService"]
