"""The API under test: the real application (``create_app``) on a real database, driven
in-process through httpx's ASGI transport with its lifespan running."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from agents.registry import AgentRegistry
from backend.api import create_app
from backend.api.deps import AppState
from backend.config import Settings
from backend.db.migrate import upgrade_async

ADMIN_TOKEN = "admin-token-for-tests"
BASE_URL = "http://bulwark.test"

SettingsFactory = Callable[..., Settings]


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings

    @property
    def state(self) -> AppState:
        state: AppState = self.app.state.bulwark
        return state

    async def key(self, name: str, *, admin: bool = False) -> dict[str, str]:
        """Headers carrying a new API key."""
        secret, _ = await self.state.keys.create(name, admin=admin)
        return bearer(secret)

    async def submit(self, headers: dict[str, str], **body: Any) -> httpx.Response:
        payload = {"type": "review", "input": {"code": "x = 1\n"}, **body}
        return await self.client.post("/v1/tasks", json=payload, headers=headers)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


ADMIN = bearer(ADMIN_TOKEN)


def error_of(response: httpx.Response) -> tuple[str, str]:
    """``(code, message)`` of an error answer, checking its shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"], body["error"]["message"]


@asynccontextmanager
async def running(
    settings: Settings,
    *,
    registry: AgentRegistry | None = None,
    raise_app_exceptions: bool = True,
    migrate: bool = True,
) -> AsyncIterator[Api]:
    """The application, started. ``migrate`` upgrades a PostgreSQL database first, as
    ``bulwark db upgrade`` does in a deployment (the app migrates SQLite itself)."""
    if migrate and not settings.database_url.startswith("sqlite"):
        await upgrade_async(settings.database_url)
    app = create_app(settings, registry=registry)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield Api(app, client, settings)


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "admin_token": ADMIN_TOKEN,
        "embedded_workers": False,
        **overrides,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture
def make_settings(sqlite_url: str) -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        return settings_for(sqlite_url, **overrides)

    return make


@pytest.fixture
async def api(make_settings: SettingsFactory) -> AsyncIterator[Api]:
    async with running(make_settings()) as api:
        yield api
