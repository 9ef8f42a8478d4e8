"""Bulwark's real stack: ``create_gateway`` from ``Settings`` on a database (SQLite in the work
directory unless told otherwise), call history on, SQL breaker store, default settings except
where a scenario changes the common ones. The fallback target is a second OpenAI-compatible
provider named ``backup``, added through ``create_gateway(providers=...)``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from backend.config import Settings
from backend.core.breaker_state import BreakerEvent, BreakerState
from backend.core.errors import BulwarkError, ErrorCategory
from backend.db.engine import create_engine
from backend.db.models import LLMAttemptRow
from backend.llm.factory import create_gateway
from backend.llm.gateway import LLMGateway
from backend.llm.providers.openai_provider import OpenAIProvider
from bench.common import API_KEY, MESSAGES, MODEL
from bench.contenders.base import Contender, Outcome
from bench.contenders.raw_sdk import sdk_client

PRIMARY = f"openai:{MODEL}"
FALLBACK = f"backup:{MODEL}"
ROUTE = "bench"


def bench_settings(
    spec_database_url: str, primary_url: str, fallback: bool, overrides: dict[str, Any]
) -> Settings:
    values: dict[str, Any] = {
        "database_url": spec_database_url,
        "routes": {ROUTE: [PRIMARY, FALLBACK] if fallback else [PRIMARY]},
        "openai_api_key": API_KEY,
        "openai_base_url": primary_url,
        **overrides,
    }
    return Settings(_env_file=None, **values)


class BulwarkGateway(Contender):
    name = "bulwark"
    label = "Bulwark gateway"
    has_breaker = True
    has_fallback = True
    notes = ("real stack: SQLite history (batched) + SQL breaker store",)

    gateway: LLMGateway

    async def start(self) -> None:
        s = self.spec.settings
        database_url = self.spec.database_url or (
            f"sqlite+aiosqlite:///{Path(self.spec.workdir) / 'bulwark-bench.db'}"
        )
        self.database_url = database_url
        overrides: dict[str, Any] = {
            "retry_max_retries": s.max_retries,
            "retry_initial_wait": s.initial_wait,
            "retry_multiplier": s.multiplier,
            "retry_max_wait": s.max_wait,
            "retry_attempt_timeout": s.attempt_timeout,
            "breaker_threshold": s.breaker_threshold,
            "breaker_open_seconds": s.open_seconds,
            **self.spec.options.get("settings", {}),
        }
        settings = bench_settings(
            database_url, self.spec.primary_url, self.spec.fallback_url is not None, overrides
        )
        providers: list[OpenAIProvider] = []
        if self.spec.fallback_url is not None:
            providers.append(
                OpenAIProvider(
                    "backup",
                    api_key=API_KEY,
                    base_url=self.spec.fallback_url,
                    default_timeout=s.attempt_timeout,
                )
            )
        self.gateway = await create_gateway(
            settings, providers=providers, migrate=self.spec.options.get("migrate")
        )
        self.gateway.breakers.on_transition(self._on_transition)
        if self.spec.max_connections is not None or self.spec.transport != "httpx":
            # The memory scenario's HTTP client (wider pool, aiohttp), as for the others:
            # OpenAIProvider has no option for it, so its SDK client is swapped here.
            for name, provider in self.gateway.providers.items():
                if isinstance(provider, OpenAIProvider):
                    url = self.spec.primary_url if name == "openai" else self.spec.fallback_url
                    assert url is not None
                    await provider.aclose()
                    provider._client = sdk_client(
                        url,
                        s.attempt_timeout,
                        self.spec.max_connections,
                        self.spec.transport,
                        max_retries=0,
                    )

    def _on_transition(self, event: BreakerEvent) -> None:
        if event.key == PRIMARY and event.to_state is BreakerState.OPEN:
            self.note_open()

    async def call(self, budget: float | None = None) -> Outcome:
        deadline = None if budget is None else time.monotonic() + budget
        try:
            result = await self.gateway.complete(
                MESSAGES, route=ROUTE, agent="bench", deadline=deadline
            )
        except BulwarkError as exc:
            return Outcome(
                False,
                error=type(exc).__name__,
                refused=exc.category is ErrorCategory.CIRCUIT_OPEN,
            )
        return Outcome(True, served_by="primary" if result.target == PRIMARY else "fallback")

    async def breaker_open(self) -> bool | None:
        snapshot = await self.gateway.breakers.get(PRIMARY).snapshot(fresh=True)
        return snapshot.state is not BreakerState.CLOSED

    async def recorded_attempts(self) -> int | None:
        await self.gateway.flush_history()
        engine = create_engine(self.database_url)
        try:
            async with engine.connect() as conn:
                query = (
                    select(func.count())
                    .select_from(LLMAttemptRow)
                    .where(LLMAttemptRow.outcome != "refused")
                )
                count = (await conn.execute(query)).scalar_one()
        finally:
            await engine.dispose()
        return int(count)

    async def aclose(self) -> None:
        await self.gateway.aclose()


__all__ = ["FALLBACK", "PRIMARY", "ROUTE", "BulwarkGateway", "bench_settings"]
