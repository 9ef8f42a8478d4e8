"""The gateway against the fake provider server, with the real SDKs and a real database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pydantic import BaseModel

from backend.core.errors import (
    AllTargetsFailedError,
    AllTargetsUnavailableError,
    ErrorCategory,
    PermanentError,
    TransientError,
)
from backend.llm.gateway import LLMGateway
from tests.fakes.behaviours import (
    auth_error,
    bad_request,
    hang,
    rate_limit,
    reply,
    reply_json,
    reply_tool,
    server_error,
    stream,
)
from tests.fakes.provider_server import FakeProviderServer
from tests.integration.gateway_helpers import ANTHROPIC, OPENAI, gateway_settings, history

MakeGateway = Callable[..., Awaitable[LLMGateway]]


class Verdict(BaseModel):
    approved: bool
    reason: str


@pytest.fixture
async def make_gateway(
    provider_server: FakeProviderServer, database_url: str
) -> AsyncIterator[MakeGateway]:
    gateways: list[LLMGateway] = []

    async def make(routes: dict[str, list[str]], **overrides: Any) -> LLMGateway:
        settings = gateway_settings(provider_server, database_url, routes, **overrides)
        gateway = await LLMGateway.create(settings, migrate=True)
        gateways.append(gateway)
        return gateway

    yield make
    for gateway in gateways:
        await gateway.aclose()


async def test_answer_and_history(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, database_url: str
) -> None:
    provider_server.script(reply("Looks good."))
    gateway = await make_gateway({"review": [OPENAI]})
    result = await gateway.complete(
        [{"role": "user", "content": "Review this"}], route="review", agent="tester", task_id="t1"
    )
    assert (result.text, result.target, result.attempts) == ("Looks good.", OPENAI, 1)
    await gateway.flush_history()
    calls, attempts = await history(database_url)
    assert [(c.id, c.agent, c.task_id, c.route, c.target, c.outcome) for c in calls] == [
        (result.call_id, "tester", "t1", "review", OPENAI, "success")
    ]
    assert [(a.attempt, a.outcome, a.decision) for a in attempts] == [(1, "success", "succeed")]


async def test_requests_sent_equal_attempt_rows(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, database_url: str
) -> None:
    provider_server.script(server_error(503), server_error(502), reply("ok"))
    gateway = await make_gateway({"review": [OPENAI]})
    result = await gateway.complete([{"role": "user", "content": "hi"}], route="review")
    assert result.text == "ok"
    await gateway.flush_history()
    _, attempts = await history(database_url)
    assert provider_server.request_count == len(attempts) == 3
    assert [(a.outcome, a.http_status, a.decision) for a in attempts] == [
        ("failure", 503, "retry"),
        ("failure", 502, "retry"),
        ("success", None, "succeed"),
    ]


async def test_retry_after_from_a_real_429_is_honoured(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, database_url: str
) -> None:
    provider_server.script(rate_limit(retry_after=1), reply("after the wait"))
    gateway = await make_gateway({"review": [OPENAI]})
    started = time.monotonic()
    result = await gateway.complete([{"role": "user", "content": "hi"}], route="review")
    assert result.text == "after the wait"
    assert time.monotonic() - started >= 1.0
    await gateway.flush_history()
    _, attempts = await history(database_url)
    assert attempts[0].category == "rate_limit"
    assert attempts[0].retry_after_ms == 1000
    assert attempts[0].wait_ms is not None and attempts[0].wait_ms >= 1000


async def test_fallback_from_openai_outage_to_anthropic(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, database_url: str
) -> None:
    provider_server.set_default(server_error(503), provider="openai")
    provider_server.set_default(reply("from claude"), provider="anthropic")
    gateway = await make_gateway({"review": [OPENAI, ANTHROPIC]})
    result = await gateway.complete([{"role": "user", "content": "hi"}], route="review")
    assert (result.text, result.target) == ("from claude", ANTHROPIC)
    assert provider_server.count(provider="openai") == 4  # 1 + 3 retries
    await gateway.flush_history()
    calls, attempts = await history(database_url)
    assert calls[0].target == ANTHROPIC
    assert [a.decision for a in attempts] == ["retry", "retry", "retry", "fallback", "succeed"]
    assert [a.target for a in attempts] == [OPENAI] * 4 + [ANTHROPIC]


async def test_open_breaker_skips_the_target_without_a_request(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, database_url: str
) -> None:
    provider_server.set_default(server_error(500), provider="openai")
    provider_server.set_default(reply("backup"), provider="anthropic")
    gateway = await make_gateway(
        {"review": [OPENAI, ANTHROPIC]}, breaker_threshold=2, retry_max_retries=0
    )
    for _ in range(2):
        await gateway.complete([{"role": "user", "content": "hi"}], route="review")
    assert provider_server.count(provider="openai") == 2
    result = await gateway.complete([{"role": "user", "content": "hi"}], route="review")
    assert result.target == ANTHROPIC
    assert provider_server.count(provider="openai") == 2  # skipped: no request sent
    await gateway.flush_history()
    _, attempts = await history(database_url)
    refused = [a for a in attempts if a.outcome == "refused"]
    assert [(a.target, a.category, a.decision) for a in refused] == [
        (OPENAI, "circuit_open", "fallback")
    ]


async def test_auth_error_moves_on_without_retrying(
    make_gateway: MakeGateway, provider_server: FakeProviderServer
) -> None:
    provider_server.set_default(auth_error(), provider="openai")
    provider_server.set_default(reply("ok"), provider="anthropic")
    gateway = await make_gateway({"review": [OPENAI, ANTHROPIC]})
    result = await gateway.complete([{"role": "user", "content": "hi"}], route="review")
    assert result.target == ANTHROPIC
    assert provider_server.count(provider="openai") == 1


async def test_invalid_request_ends_the_call(
    make_gateway: MakeGateway, provider_server: FakeProviderServer
) -> None:
    provider_server.set_default(bad_request("temperature must be <= 2"), provider="openai")
    gateway = await make_gateway({"review": [OPENAI, ANTHROPIC]})
    with pytest.raises(PermanentError) as caught:
        await gateway.complete([{"role": "user", "content": "hi"}], route="review")
    assert caught.value.category is ErrorCategory.INVALID_REQUEST
    assert provider_server.count(provider="anthropic") == 0


async def test_every_target_failing_names_each_target(
    make_gateway: MakeGateway, provider_server: FakeProviderServer
) -> None:
    provider_server.set_default(server_error(503), provider="openai")
    provider_server.set_default(auth_error(), provider="anthropic")
    gateway = await make_gateway({"review": [OPENAI, ANTHROPIC]}, retry_max_retries=1)
    with pytest.raises(AllTargetsUnavailableError) as caught:
        await gateway.complete([{"role": "user", "content": "hi"}], route="review")
    assert [(f.target, f.category) for f in caught.value.failures] == [
        (OPENAI, ErrorCategory.SERVER_ERROR),
        (ANTHROPIC, ErrorCategory.AUTH_ERROR),
    ]
    assert OPENAI in caught.value.message and ANTHROPIC in caught.value.message
    assert isinstance(caught.value, TransientError)


async def test_permanent_failures_everywhere_are_permanent(
    make_gateway: MakeGateway, provider_server: FakeProviderServer
) -> None:
    provider_server.set_default(auth_error())
    gateway = await make_gateway({"review": [OPENAI, ANTHROPIC]})
    with pytest.raises(AllTargetsFailedError):
        await gateway.complete([{"role": "user", "content": "hi"}], route="review")
    assert provider_server.request_count == 2


async def test_deadline_bounds_retries_and_fallbacks(
    make_gateway: MakeGateway, provider_server: FakeProviderServer
) -> None:
    provider_server.set_default(rate_limit(retry_after=2))
    gateway = await make_gateway({"review": [OPENAI, ANTHROPIC]})
    started = time.monotonic()
    with pytest.raises(TransientError):
        await gateway.complete(
            [{"role": "user", "content": "hi"}], route="review", deadline=time.monotonic() + 1.0
        )
    assert time.monotonic() - started < 1.5


async def test_structured_output_valid(
    make_gateway: MakeGateway, provider_server: FakeProviderServer
) -> None:
    provider_server.script(reply_json({"approved": True, "reason": "fine"}), provider="openai")
    provider_server.script(
        reply_tool("Verdict", {"approved": False, "reason": "no"}), provider="anthropic"
    )
    gateway = await make_gateway({"a": [OPENAI], "b": [ANTHROPIC]})
    first = await gateway.complete([{"role": "user", "content": "ok?"}], route="a", schema=Verdict)
    second = await gateway.complete([{"role": "user", "content": "ok?"}], route="b", schema=Verdict)
    assert first.parsed == Verdict(approved=True, reason="fine")
    assert second.parsed == Verdict(approved=False, reason="no")
    body = provider_server.requests(provider="openai")[0].body
    assert body["response_format"]["type"] == "json_schema"


async def test_structured_output_repaired_once(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, database_url: str
) -> None:
    provider_server.script(
        reply("approved, because it is fine"), reply_json({"approved": True, "reason": "fine"})
    )
    gateway = await make_gateway({"review": [OPENAI]})
    result = await gateway.complete(
        [{"role": "user", "content": "ok?"}], route="review", schema=Verdict
    )
    assert result.parsed == Verdict(approved=True, reason="fine")
    repair = provider_server.requests()[1].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": "approved, because it is fine"}
    assert "not valid JSON" in repair[-1]["content"]
    await gateway.flush_history()
    _, attempts = await history(database_url)
    assert [(a.outcome, a.category) for a in attempts] == [
        ("failure", "invalid_output"),
        ("success", None),
    ]


async def test_structured_output_invalid_twice_fails(
    make_gateway: MakeGateway, provider_server: FakeProviderServer
) -> None:
    provider_server.script(reply_json({"approved": "maybe"}), reply("still not json"))
    gateway = await make_gateway({"review": [OPENAI, ANTHROPIC]})
    with pytest.raises(PermanentError) as caught:
        await gateway.complete([{"role": "user", "content": "ok?"}], route="review", schema=Verdict)
    assert caught.value.category is ErrorCategory.INVALID_OUTPUT
    assert provider_server.count(provider="anthropic") == 0


async def test_stream_success(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, database_url: str
) -> None:
    provider_server.script(stream(["Hel", "lo", "!"]))
    gateway = await make_gateway({"chat": [ANTHROPIC]})
    chunks = [c async for c in gateway.stream([{"role": "user", "content": "hi"}], route="chat")]
    assert "".join(chunks) == "Hello!"
    await gateway.flush_history()
    calls, _ = await history(database_url)
    assert calls[0].outcome == "success"


async def test_stream_failure_before_first_chunk_is_retried(
    make_gateway: MakeGateway, provider_server: FakeProviderServer
) -> None:
    provider_server.script(server_error(503), stream(["a", "b"]))
    gateway = await make_gateway({"chat": [OPENAI]})
    chunks = [c async for c in gateway.stream([{"role": "user", "content": "hi"}], route="chat")]
    assert chunks == ["a", "b"]
    assert provider_server.request_count == 2


async def test_stream_failure_mid_stream_is_not_retried(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, database_url: str
) -> None:
    provider_server.script(stream(["one ", "two ", "three"], fail_after=2))
    gateway = await make_gateway({"chat": [OPENAI, ANTHROPIC]})
    received: list[str] = []
    with pytest.raises(TransientError) as caught:
        async for chunk in gateway.stream([{"role": "user", "content": "hi"}], route="chat"):
            received.append(chunk)
    assert received == ["one ", "two "]
    assert caught.value.category is ErrorCategory.CONNECTION_ERROR
    assert provider_server.request_count == 1
    await gateway.flush_history()
    calls, attempts = await history(database_url)
    assert calls[0].outcome == "failure"
    assert [(a.outcome, a.decision) for a in attempts] == [("failure", "give_up")]


async def test_a_cancelled_call_is_still_recorded(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, database_url: str
) -> None:
    provider_server.script(hang())
    gateway = await make_gateway({"review": [OPENAI]})
    call = asyncio.create_task(
        gateway.complete([{"role": "user", "content": "hi"}], route="review", agent="tester")
    )
    assert await asyncio.to_thread(provider_server.wait_for_requests, 1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await gateway.flush_history()
    calls, attempts = await history(database_url)
    assert [(c.agent, c.outcome, c.category) for c in calls] == [("tester", "failure", "cancelled")]
    assert [(a.outcome, a.category) for a in attempts] == [("failure", "cancelled")]
    assert provider_server.request_count == len(attempts) == 1
