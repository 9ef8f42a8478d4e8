"""AnthropicProvider against the fake provider server: the real SDK over HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import aclosing

import anthropic
import httpx2
import pytest

from backend.config import Settings
from backend.core.errors import ErrorCategory, ProviderError
from backend.llm.providers import anthropic_provider
from backend.llm.providers.anthropic_provider import DEFAULT_MAX_TOKENS, AnthropicProvider
from backend.llm.types import ChatMessage, OutputSchema, ProviderRequest
from tests.fakes.behaviours import (
    Behaviour,
    auth_error,
    drop,
    hang,
    model_not_found,
    overloaded,
    rate_limit,
    reply,
    reply_tool,
    server_error,
    stream,
)
from tests.fakes.fixtures import provider_server  # noqa: F401
from tests.fakes.provider_server import FakeProviderServer

MODEL = "claude-haiku-4-5"
SCHEMA = OutputSchema(
    name="Verdict",
    json_schema={
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "reason": {"type": "string"}},
        "required": ["ok", "reason"],
    },
)
VERDICT = {"ok": False, "reason": "off by one"}


def make_request(**overrides: object) -> ProviderRequest:
    values: dict[str, object] = {
        "model": MODEL,
        "messages": [
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Review this."),
            ChatMessage("assistant", "Which file?"),
            ChatMessage("system", "Answer in English."),
            ChatMessage("user", "main.py"),
        ],
        "timeout": 5.0,
    }
    values.update(overrides)
    return ProviderRequest(**values)  # type: ignore[arg-type]


@pytest.fixture
async def provider(provider_server: FakeProviderServer) -> AsyncIterator[AnthropicProvider]:  # noqa: F811
    adapter = AnthropicProvider(api_key="test-key", base_url=provider_server.anthropic_base_url)
    try:
        yield adapter
    finally:
        await adapter.aclose()


def assert_wrapped(exc: ProviderError) -> None:
    """A ProviderError whose cause is the SDK's (or httpx2's) exception, never re-raised raw."""
    assert type(exc) is ProviderError
    assert isinstance(exc.__cause__, anthropic.AnthropicError | httpx2.HTTPError)
    assert exc.cause is exc.__cause__


async def test_reply_is_parsed_with_usage_and_request_id(
    provider: AnthropicProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    provider_server.script(reply("Looks good.", usage=(12, 3)))

    response = await provider.complete(make_request(max_tokens=50, temperature=0.2))

    assert response.text == "Looks good."
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.finish_reason == "end_turn"
    assert response.request_id is not None
    assert response.request_id.startswith("req_")
    [received] = provider_server.requests(provider="anthropic")
    assert received.path == "/v1/messages"
    assert received.headers["authorization"] == "Bearer test-key"  # not x-api-key
    body = received.body
    assert body["model"] == MODEL
    assert body["max_tokens"] == 50
    assert body["temperature"] == 0.2
    assert "tools" not in body
    assert "tool_choice" not in body


async def test_system_messages_go_to_the_system_parameter(
    provider: AnthropicProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    await provider.complete(make_request())

    body = provider_server.bodies()[0]
    assert body["system"] == "Be brief.\n\nAnswer in English."
    assert body["messages"] == [
        {"role": "user", "content": "Review this."},
        {"role": "assistant", "content": "Which file?"},
        {"role": "user", "content": "main.py"},
    ]
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert "temperature" not in body


async def test_no_system_parameter_without_system_messages(
    provider: AnthropicProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    await provider.complete(make_request(messages=[ChatMessage("user", "Hi")]))

    body = provider_server.bodies()[0]
    assert "system" not in body
    assert body["messages"] == [{"role": "user", "content": "Hi"}]


async def test_schema_request_forces_a_tool_and_returns_its_input_as_json(
    provider: AnthropicProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    provider_server.script(reply_tool("Verdict", VERDICT))

    response = await provider.complete(make_request(schema=SCHEMA))

    assert json.loads(response.text) == VERDICT
    assert response.finish_reason == "tool_use"
    body = provider_server.bodies()[0]
    assert body["tools"] == [{"name": "Verdict", "input_schema": dict(SCHEMA.json_schema)}]
    assert body["tool_choice"] == {"type": "tool", "name": "Verdict"}


async def test_refusal_is_a_content_filter_failure(
    provider: AnthropicProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    provider_server.script(reply("I can't help with that.", finish="content_filter"))

    with pytest.raises(ProviderError) as caught:
        await provider.complete(make_request())

    assert caught.value.category is ErrorCategory.CONTENT_FILTER
    assert caught.value.classification.transient is False
    assert caught.value.classification.request_id is not None


async def test_stream_yields_text_deltas_in_order(
    provider: AnthropicProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    provider_server.script(stream(["Hel", "lo", ", ", "world"]))

    chunks = [chunk async for chunk in provider.stream(make_request())]

    assert chunks == ["Hel", "lo", ", ", "world"]
    body = provider_server.bodies()[0]
    assert body["stream"] is True
    assert body["system"] == "Be brief.\n\nAnswer in English."


async def test_stream_of_a_schema_request_yields_the_tool_input_json(
    provider: AnthropicProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    provider_server.script(reply_tool("Verdict", VERDICT))

    chunks = [chunk async for chunk in provider.stream(make_request(schema=SCHEMA))]

    assert len(chunks) > 1
    assert json.loads("".join(chunks)) == VERDICT
    assert provider_server.bodies()[0]["tool_choice"] == {"type": "tool", "name": "Verdict"}


async def test_stream_closed_early_releases_the_connection(
    provider: AnthropicProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    provider_server.script(stream(["a", "b", "c"], chunk_delay_ms=20), reply("next"))

    async with aclosing(provider.stream(make_request())) as chunks:
        async for chunk in chunks:
            assert chunk == "a"
            break

    assert (await provider.complete(make_request())).text == "next"


async def test_stream_refusal_raises_after_the_chunks(
    provider: AnthropicProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    provider_server.script(stream(["one ", "two"], finish="content_filter"))
    received: list[str] = []

    with pytest.raises(ProviderError) as caught:
        async for chunk in provider.stream(make_request()):
            received.append(chunk)

    assert received == ["one ", "two"]
    assert caught.value.category is ErrorCategory.CONTENT_FILTER


FAILURES: list[tuple[str, Behaviour, ErrorCategory]] = [
    ("429", rate_limit(retry_after=7), ErrorCategory.RATE_LIMIT),
    ("401", auth_error(), ErrorCategory.AUTH_ERROR),
    ("404", model_not_found(), ErrorCategory.MODEL_NOT_FOUND),
    ("529", overloaded(), ErrorCategory.OVERLOADED),
    ("503", server_error(503), ErrorCategory.SERVER_ERROR),
    ("hang", hang(), ErrorCategory.TIMEOUT),
    ("drop", drop(), ErrorCategory.CONNECTION_ERROR),
    ("reset", drop(reset=True), ErrorCategory.CONNECTION_ERROR),
]


@pytest.mark.parametrize(
    ("behaviour", "category"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES]
)
async def test_failure_is_one_classified_provider_error(
    provider: AnthropicProvider,
    provider_server: FakeProviderServer,  # noqa: F811
    behaviour: Behaviour,
    category: ErrorCategory,
) -> None:
    provider_server.set_default(behaviour)

    with pytest.raises(ProviderError) as caught:
        await provider.complete(make_request(timeout=0.3))

    assert_wrapped(caught.value)
    assert caught.value.category is category
    assert provider_server.count(provider="anthropic") == 1  # the SDK's own retries are off
    if behaviour.status == 429:
        assert caught.value.classification.retry_after_seconds == 7
        assert caught.value.classification.transient is True


@pytest.mark.parametrize(
    ("behaviour", "category"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES]
)
async def test_failure_before_the_first_chunk_is_one_classified_provider_error(
    provider: AnthropicProvider,
    provider_server: FakeProviderServer,  # noqa: F811
    behaviour: Behaviour,
    category: ErrorCategory,
) -> None:
    provider_server.set_default(behaviour)

    with pytest.raises(ProviderError) as caught:
        async for _ in provider.stream(make_request(timeout=0.3)):
            pytest.fail("no chunk expected")

    assert_wrapped(caught.value)
    assert caught.value.category is category
    assert provider_server.count(provider="anthropic") == 1


async def test_mid_stream_drop_raises_after_the_first_chunks(
    provider: AnthropicProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    provider_server.script(stream(["a", "b", "c", "d"], fail_after=2))
    received: list[str] = []

    with pytest.raises(ProviderError) as caught:
        async for chunk in provider.stream(make_request()):
            received.append(chunk)

    assert received == ["a", "b"]
    assert_wrapped(caught.value)
    assert caught.value.category is ErrorCategory.CONNECTION_ERROR
    assert provider_server.count(provider="anthropic") == 1


async def test_cancellation_is_never_wrapped(
    provider: AnthropicProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    provider_server.set_default(hang())
    task = asyncio.create_task(provider.complete(make_request()))
    assert await asyncio.to_thread(provider_server.wait_for_requests, 1)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


async def test_from_settings(
    monkeypatch: pytest.MonkeyPatch,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    assert anthropic_provider.from_settings(Settings()) is None

    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", provider_server.anthropic_base_url)
    adapter = anthropic_provider.from_settings(Settings())
    assert adapter is not None
    try:
        assert adapter.name == "anthropic"
        assert (await adapter.complete(make_request())).text
        assert provider_server.requests()[0].headers["authorization"] == "Bearer from-env"
    finally:
        await adapter.aclose()
