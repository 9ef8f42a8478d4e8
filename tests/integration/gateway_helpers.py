"""Shared set-up for gateway tests: settings pointing at the fake provider server, and reads
of the history tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.config import Settings
from backend.db.engine import create_engine
from backend.db.models import LLMAttemptRow, LLMCallRow
from tests.fakes.provider_server import FakeProviderServer

OPENAI = "openai:gpt-4o-mini"
ANTHROPIC = "anthropic:claude-haiku-4-5"


def gateway_settings(
    server: FakeProviderServer, database_url: str, routes: dict[str, list[str]], **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "routes": routes,
        "openai_api_key": "sk-test-openai-key-0000000000",
        "openai_base_url": server.openai_base_url,
        "anthropic_api_key": "sk-ant-test-key-0000000000",
        "anthropic_base_url": server.anthropic_base_url,
        "retry_initial_wait": 0.01,
        "retry_max_wait": 0.05,
        "retry_attempt_timeout": 5.0,
        "history_flush_seconds": 0.05,
    }
    values.update(overrides)
    return Settings(**values)


async def history(database_url: str) -> tuple[list[LLMCallRow], list[LLMAttemptRow]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            calls = (await conn.execute(select(LLMCallRow).order_by(LLMCallRow.started_at))).all()
            attempts = (
                await conn.execute(
                    select(LLMAttemptRow).order_by(LLMAttemptRow.call_id, LLMAttemptRow.attempt)
                )
            ).all()
    finally:
        await engine.dispose()
    return list(calls), list(attempts)  # type: ignore[arg-type]
