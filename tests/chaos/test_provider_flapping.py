"""A provider that flaps (the fake provider server, a process of its own, alternates between
answering 503 and answering normally, in windows of about a second): the gateway's breaker
opens and closes with it, and while it is open only probes reach the provider."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import select

from backend.config import Settings
from backend.core.errors import BulwarkError, ErrorCategory
from backend.db.engine import create_engine
from backend.db.models import BreakerEventRow, LLMAttemptRow
from backend.llm.gateway import LLMGateway
from tests.fakes.behaviours import reply, server_error
from tests.fakes.remote import ProviderServerProcess

pytestmark = pytest.mark.slow

TARGET = "openai:gpt-4o-mini"
WINDOW_SECONDS = 1.2  # unhealthy, then healthy, then unhealthy, ...
PERIODS = 4
CALL_EVERY = 0.04
HALF_OPEN_MAX_CALLS = 1


@pytest.fixture
def provider() -> Iterator[ProviderServerProcess]:
    server = ProviderServerProcess()
    try:
        yield server.start()
    finally:
        server.stop()


async def test_breaker_follows_a_flapping_provider_and_lets_only_probes_through(
    provider: ProviderServerProcess, sqlite_url: str
) -> None:
    settings = Settings(
        database_url=sqlite_url,
        routes={"default": [TARGET]},
        openai_api_key="sk-test-openai-key-0000000000",
        openai_base_url=provider.openai_base_url,
        retry_max_retries=0,
        retry_attempt_timeout=5.0,
        breaker_threshold=3,
        breaker_open_seconds=1.0,
        breaker_half_open_max_calls=HALF_OPEN_MAX_CALLS,
        history_flush_seconds=0.05,
    )
    outcomes = {"ok": 0, "failed": 0, "refused": 0}
    kinds: set[str] = set()
    gateway = await LLMGateway.create(settings, migrate=True)
    try:
        started = time.monotonic()
        healthy: bool | None = None
        while (elapsed := time.monotonic() - started) < 2 * WINDOW_SECONDS * PERIODS:
            now_healthy = int(elapsed // WINDOW_SECONDS) % 2 == 1
            if now_healthy is not healthy:
                behaviour = reply("fine") if now_healthy else server_error(503)
                await asyncio.to_thread(provider.set_default, behaviour)
                healthy = now_healthy
            try:
                await gateway.complete(
                    [{"role": "user", "content": "ping"}], route="default", agent="chaos"
                )
                outcomes["ok"] += 1
            except BulwarkError as error:  # the route's one target failed, or was refused
                is_open = error.category is ErrorCategory.CIRCUIT_OPEN
                outcomes["refused" if is_open else "failed"] += 1
                kinds.add(type(error).__name__)
            await asyncio.sleep(CALL_EVERY)
        await gateway.flush_history()
    finally:
        await gateway.aclose()

    engine = create_engine(sqlite_url)
    try:
        async with engine.connect() as conn:
            events = (
                await conn.execute(
                    select(BreakerEventRow.from_state, BreakerEventRow.to_state, BreakerEventRow.at)
                    .where(BreakerEventRow.key == TARGET)
                    .order_by(BreakerEventRow.id)
                )
            ).all()
            attempts = (
                await conn.execute(
                    select(LLMAttemptRow.started_at, LLMAttemptRow.outcome).order_by(
                        LLMAttemptRow.started_at
                    )
                )
            ).all()
    finally:
        await engine.dispose()

    assert min(outcomes.values()) > 0, (outcomes, kinds)
    transitions = [(e.from_state, e.to_state) for e in events]
    cycles = sum(
        1
        for before, after in itertools.pairwise(transitions)
        if before == ("open", "half_open") and after == ("half_open", "closed")
    )
    assert cycles >= PERIODS - 1, transitions
    assert transitions.count(("closed", "open")) >= PERIODS - 1, transitions
    assert set(transitions) <= {
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("half_open", "open"),
    }, transitions

    sent = [a.started_at for a in attempts if a.outcome != "refused"]
    refused = [a for a in attempts if a.outcome == "refused"]
    # Every request that reached the provider has its attempt row, and no other does.
    assert provider.stats(with_requests=False)["total"] == len(sent)
    assert len(refused) == outcomes["refused"]
    # Each open window (from an opening to the breaker's next closing): only probes, one per
    # half-open period, reached the provider.
    windows: list[tuple[datetime, datetime, int]] = []
    opened_at: datetime | None = None
    probes = 0
    for event in events:
        if event.to_state == "open" and opened_at is None:
            opened_at, probes = event.at, 0
        elif event.to_state == "half_open":
            probes += 1
        elif event.to_state == "closed" and opened_at is not None:
            windows.append((opened_at, event.at, probes))
            opened_at = None
    assert len(windows) >= PERIODS - 1
    for start, end, half_opens in windows:
        reached = sum(1 for at in sent if start < at < end)
        assert reached <= HALF_OPEN_MAX_CALLS * half_opens, (start, end, reached, half_opens)
