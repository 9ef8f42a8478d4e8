"""Metrics from a real gateway: the fake provider server, the real SDKs, a real database, and
the listeners wired as the application wires them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from backend.core.errors import PermanentError
from backend.llm.gateway import LLMGateway
from backend.metrics import BreakerMetrics, BulwarkMetrics, MeteredHistory, RecoveryMetrics
from tests.fakes.behaviours import reply, reply_json, server_error
from tests.fakes.provider_server import FakeProviderServer
from tests.integration.gateway_helpers import ANTHROPIC, OPENAI, gateway_settings, history

HI = [{"role": "user", "content": "hi"}]


@dataclass
class Metered:
    gateway: LLMGateway
    registry: CollectorRegistry

    def value(self, name: str, **labels: str) -> float:
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found


MakeMetered = Callable[..., Awaitable[Metered]]


@pytest.fixture
async def make_metered(
    provider_server: FakeProviderServer, sqlite_url: str
) -> AsyncIterator[MakeMetered]:
    gateways: list[LLMGateway] = []

    async def make(routes: dict[str, list[str]], **overrides: Any) -> Metered:
        registry = CollectorRegistry()
        metrics = BulwarkMetrics(registry)
        settings = gateway_settings(provider_server, sqlite_url, routes, **overrides)
        gateway = await LLMGateway.create(
            settings, listeners=[RecoveryMetrics(metrics)], migrate=True
        )
        gateway.history = MeteredHistory(gateway.history, metrics)
        gateway.breakers.on_transition(BreakerMetrics(metrics))
        gateways.append(gateway)
        return Metered(gateway, registry)

    yield make
    for gateway in gateways:
        await gateway.aclose()


async def test_a_503_then_success_is_one_failed_attempt_and_one_retry(
    make_metered: MakeMetered, provider_server: FakeProviderServer, sqlite_url: str
) -> None:
    provider_server.script(server_error(503), reply("ok"))
    m = await make_metered({"review": [OPENAI]})
    result = await m.gateway.complete(HI, route="review", agent="reviewer", task_id="t-1")
    assert result.text == "ok"
    who = {"target": OPENAI, "agent": "reviewer"}
    attempts = "bulwark_llm_attempts_total"
    assert m.value(attempts, **who, outcome="failure", category="server_error") == 1
    assert m.value(attempts, **who, outcome="success", category="none") == 1
    assert m.value("bulwark_llm_retries_total", **who) == 1
    assert m.value("bulwark_llm_call_duration_seconds_count", **who) == 1
    # The wrapped recorder still writes the history.
    await m.gateway.flush_history()
    calls, rows = await history(sqlite_url)
    assert len(calls) == 1 and len(rows) == 2


async def test_a_fallback_is_counted_per_route_and_targets(
    make_metered: MakeMetered, provider_server: FakeProviderServer
) -> None:
    provider_server.set_default(server_error(503), provider="openai")
    provider_server.set_default(reply("from claude"), provider="anthropic")
    m = await make_metered({"review": [OPENAI, ANTHROPIC]})
    result = await m.gateway.complete(HI, route="review", agent="reviewer")
    assert result.target == ANTHROPIC
    fallbacks = "bulwark_fallbacks_total"
    assert m.value(fallbacks, route="review", from_target=OPENAI, to_target=ANTHROPIC) == 1
    failures = {"target": OPENAI, "agent": "reviewer", "outcome": "failure"}
    assert m.value("bulwark_llm_attempts_total", **failures, category="server_error") == 4
    assert m.value("bulwark_llm_retries_total", target=OPENAI, agent="reviewer") == 3
    duration = "bulwark_llm_call_duration_seconds_count"
    assert m.value(duration, target=ANTHROPIC, agent="reviewer") == 1


async def test_an_opening_breaker_sets_the_gauge_and_counts_the_transition(
    make_metered: MakeMetered, provider_server: FakeProviderServer
) -> None:
    provider_server.set_default(server_error(500), provider="openai")
    provider_server.set_default(reply("backup"), provider="anthropic")
    m = await make_metered(
        {"review": [OPENAI, ANTHROPIC]}, breaker_threshold=2, retry_max_retries=0
    )
    await m.gateway.complete(HI, route="review", agent="reviewer")
    assert m.registry.get_sample_value("bulwark_breaker_state", {"target": OPENAI}) is None
    await m.gateway.complete(HI, route="review", agent="reviewer")
    assert m.value("bulwark_breaker_state", target=OPENAI) == 2
    assert m.value("bulwark_breaker_transitions_total", target=OPENAI, to_state="open") == 1
    await m.gateway.complete(HI, route="review", agent="reviewer")  # refused, no request
    assert provider_server.count(provider="openai") == 2
    refused = {"target": OPENAI, "agent": "reviewer", "outcome": "refused"}
    assert m.value("bulwark_llm_attempts_total", **refused, category="circuit_open") == 1
    fallbacks = "bulwark_fallbacks_total"
    assert m.value(fallbacks, route="review", from_target=OPENAI, to_target=ANTHROPIC) == 3


async def test_a_spent_retry_budget_is_counted(
    make_metered: MakeMetered, provider_server: FakeProviderServer
) -> None:
    provider_server.set_default(server_error(503), provider="openai")
    provider_server.set_default(reply("backup"), provider="anthropic")
    m = await make_metered(
        {"review": [OPENAI, ANTHROPIC]}, retry_budget_ratio=0.0, retry_budget_min=0
    )
    result = await m.gateway.complete(HI, route="review", agent="reviewer")
    assert result.target == ANTHROPIC
    assert provider_server.count(provider="openai") == 1
    assert m.value("bulwark_retry_budget_exhausted_total", target=OPENAI) == 1
    assert m.value("bulwark_llm_retries_total", target=OPENAI, agent="reviewer") == 0


class Verdict(BaseModel):
    approved: bool
    reason: str


async def test_an_invalid_answer_and_its_re_ask_are_counted_as_a_failure_and_a_retry(
    make_metered: MakeMetered, provider_server: FakeProviderServer
) -> None:
    provider_server.script(reply("approved, because it is fine"), reply_json({"approved": True}))
    m = await make_metered({"review": [OPENAI]})
    with pytest.raises(PermanentError):
        await m.gateway.complete(HI, route="review", agent="reviewer", schema=Verdict)
    invalid = {"target": OPENAI, "agent": "reviewer", "outcome": "failure"}
    assert m.value("bulwark_llm_attempts_total", **invalid, category="invalid_output") == 2
    assert m.value("bulwark_llm_retries_total", target=OPENAI, agent="reviewer") == 1
    assert m.value("bulwark_llm_call_duration_seconds_count", target=OPENAI, agent="reviewer")
