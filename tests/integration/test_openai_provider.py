"""OpenAIProvider against the fake provider server: the real SDK over HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import aclosing

import httpx2
import openai
import pytest

from backend.config import Settings
from backend.core.errors import ErrorCategory, ProviderError
from backend.llm.providers import openai_provider
from backend.llm.providers.openai_provider import OpenAIProvider
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
    reply_json,
    server_error,
    stream,
)
from tests.fakes.fixtures import provider_server  # noqa: F401
from tests.fakes.provider_server import FakeProviderServer

MODEL = "gpt-4o-mini"
SCHEMA = OutputSchema(
    name="Verdict",
    json_schema={
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "reason": {"type": "string"}},
        "required": ["ok", "reason"],
    },
)


def make_request(**overrides: object) -> ProviderRequest:
    values: dict[str, object] = {
        "model": MODEL,
        "messages": [ChatMessage("system", "Be brief."), ChatMessage("user", "Review this.")],
        "timeout": 5.0,
    }
    values.update(overrides)
    return ProviderRequest(**values)  # type: ignore[arg-type]


@pytest.fixture
async def provider(provider_server: FakeProviderServer) -> AsyncIterator[OpenAIProvider]:  # noqa: F811
    adapter = OpenAIProvider(api_key="test-key", base_url=provider_server.openai_base_url)
    try:
        yield adapter
    finally:
        await adapter.aclose()


def assert_wrapped(exc: ProviderError) -> None:
    """A ProviderError whose cause is the SDK's (or httpx2's) exception, never re-raised raw."""
    assert type(exc) is ProviderError
    assert isinstance(exc.__cause__, openai.OpenAIError | httpx2.HTTPError)
    assert exc.cause is exc.__cause__


async def test_reply_is_parsed_with_usage_and_request_id(
    provider: OpenAIProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    provider_server.script(reply("Looks good.", usage=(12, 3)))

    response = await provider.complete(make_request(max_tokens=50, temperature=0.2))

    assert response.text == "Looks good."
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.finish_reason == "stop"
    assert response.request_id is not None
    assert response.request_id.startswith("req_")
    [received] = provider_server.requests(provider="openai")
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == "Bearer test-key"
    body = received.body
    assert body["model"] == MODEL
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Review this."},
    ]
    assert body["max_tokens"] == 50
    assert body["temperature"] == 0.2
    assert "response_format" not in body
    assert "stream" not in body


async def test_unset_knobs_are_not_sent(
    provider: OpenAIProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    await provider.complete(make_request())

    body = provider_server.bodies()[0]
    assert "max_tokens" not in body
    assert "max_completion_tokens" not in body
    assert "temperature" not in body


async def test_schema_request_sends_json_schema_response_format(
    provider: OpenAIProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    provider_server.script(reply_json({"ok": True, "reason": "fine"}))

    response = await provider.complete(make_request(schema=SCHEMA))

    assert json.loads(response.text) == {"ok": True, "reason": "fine"}
    assert provider_server.bodies()[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Verdict", "schema": dict(SCHEMA.json_schema), "strict": False},
    }


async def test_content_filter_finish_is_a_failure(
    provider: OpenAIProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    provider_server.script(reply("partial", finish="content_filter"))

    with pytest.raises(ProviderError) as caught:
        await provider.complete(make_request())

    assert caught.value.category is ErrorCategory.CONTENT_FILTER
    assert caught.value.classification.transient is False
    assert caught.value.classification.request_id is not None


async def test_stream_yields_chunks_in_order(
    provider: OpenAIProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    provider_server.script(stream(["Hel", "lo", ", ", "world"]))

    chunks = [chunk async for chunk in provider.stream(make_request(schema=SCHEMA))]

    assert chunks == ["Hel", "lo", ", ", "world"]
    body = provider_server.bodies()[0]
    assert body["stream"] is True
    assert body["response_format"]["type"] == "json_schema"


async def test_stream_closed_early_releases_the_connection(
    provider: OpenAIProvider,
    provider_server: FakeProviderServer,  # noqa: F811
) -> None:
    provider_server.script(stream(["a", "b", "c"], chunk_delay_ms=20), reply("next"))

    async with aclosing(provider.stream(make_request())) as chunks:
        async for chunk in chunks:
            assert chunk == "a"
            break

    assert (await provider.complete(make_request())).text == "next"


async def test_stream_content_filter_raises_after_the_chunks(
    provider: OpenAIProvider,
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
    ("503", server_error(503), ErrorCategory.SERVER_ERROR),
    ("529", overloaded(), ErrorCategory.OVERLOADED),
    ("hang", hang(), ErrorCategory.TIMEOUT),
    ("drop", drop(), ErrorCategory.CONNECTION_ERROR),
    ("reset", drop(reset=True), ErrorCategory.CONNECTION_ERROR),
]


@pytest.mark.parametrize(
    ("behaviour", "category"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES]
)
async def test_failure_is_one_classified_provider_error(
    provider: OpenAIProvider,
    provider_server: FakeProviderServer,  # noqa: F811
    behaviour: Behaviour,
    category: ErrorCategory,
) -> None:
    provider_server.set_default(behaviour)

    with pytest.raises(ProviderError) as caught:
        await provider.complete(make_request(timeout=0.3))

    assert_wrapped(caught.value)
    assert caught.value.category is category
    assert provider_server.count(provider="openai") == 1  # the SDK's own retries are off
    if behaviour.status == 429:
        assert caught.value.classification.retry_after_seconds == 7
        assert caught.value.classification.transient is True


@pytest.mark.parametrize(
    ("behaviour", "category"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES]
)
async def test_failure_before_the_first_chunk_is_one_classified_provider_error(
    provider: OpenAIProvider,
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
    assert provider_server.count(provider="openai") == 1


async def test_mid_stream_drop_raises_after_the_first_chunks(
    provider: OpenAIProvider,
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
    assert provider_server.count(provider="openai") == 1


async def test_cancellation_is_never_wrapped(
    provider: OpenAIProvider,
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
    assert openai_provider.from_settings(Settings()) is None

    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", provider_server.openai_base_url)
    adapter = openai_provider.from_settings(Settings())
    assert adapter is not None
    try:
        assert adapter.name == "openai"
        assert (await adapter.complete(make_request())).text
        assert provider_server.requests()[0].headers["authorization"] == "Bearer from-env"
    finally:
        await adapter.aclose()
