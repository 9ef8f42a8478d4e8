"""The fake provider server against the real OpenAI and Anthropic SDKs (async clients, no SDK
retries): formats, streaming, tool use, every scripted fault, counting, control endpoints."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from tests.fakes.behaviours import (
    Behaviour,
    auth_error,
    content_filter,
    context_length,
    drop,
    error,
    fail_first,
    garbage,
    hang,
    latency,
    model_not_found,
    overloaded,
    quota_exceeded,
    rate_limit,
    reply,
    reply_json,
    reply_tool,
    server_error,
    stream,
)
from tests.fakes.fixtures import provider_server
from tests.fakes.provider_server import FakeProviderServer
from tests.fakes.remote import ProviderServerProcess

__all__ = ["provider_server"]  # the fixture, imported for this module's tests

GPT = "gpt-4o-mini"
CLAUDE = "claude-3-5-haiku-latest"
MESSAGES: list[Any] = [{"role": "user", "content": "Review this"}]


@pytest.fixture
async def oai(provider_server: FakeProviderServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=provider_server.openai_base_url, api_key="test", max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def claude(provider_server: FakeProviderServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=provider_server.anthropic_base_url, api_key="test", max_retries=0
    ) as client:
        yield client


async def ask_openai(client: openai.AsyncOpenAI, **kw: Any) -> Any:
    return await client.chat.completions.create(model=GPT, messages=MESSAGES, **kw)


async def ask_claude(client: anthropic.AsyncAnthropic, **kw: Any) -> Any:
    return await client.messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES, **kw)


# --- answers ---------------------------------------------------------------------------------


async def test_openai_reply_is_parsed_by_the_sdk(
    provider_server: FakeProviderServer, oai: openai.AsyncOpenAI
) -> None:
    provider_server.script(reply("LGTM"))
    completion = await ask_openai(oai)
    assert completion.choices[0].message.content == "LGTM"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == GPT
    assert completion.id.startswith("chatcmpl-")
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    [received] = provider_server.requests()
    assert received.path == "/v1/chat/completions"
    assert received.provider == "openai"
    assert received.body["messages"] == MESSAGES
    assert received.headers["authorization"] == "Bearer test"


async def test_openai_json_schema_gets_the_scripted_text(
    provider_server: FakeProviderServer, oai: openai.AsyncOpenAI
) -> None:
    provider_server.script(reply_json({"verdict": "ok", "issues": []}))
    schema = {"type": "object", "properties": {"verdict": {"type": "string"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    completion = await ask_openai(oai, response_format=response_format)
    assert json.loads(completion.choices[0].message.content) == {"verdict": "ok", "issues": []}
    assert provider_server.bodies()[0]["response_format"]["type"] == "json_schema"


async def test_anthropic_reply_is_parsed_by_the_sdk(
    provider_server: FakeProviderServer, claude: anthropic.AsyncAnthropic
) -> None:
    provider_server.script(reply("Looks fine", usage=(12, 3)))
    message = await ask_claude(claude)
    assert [block.text for block in message.content] == ["Looks fine"]
    assert message.stop_reason == "end_turn"
    assert message.model == CLAUDE
    assert message.id.startswith("msg_")
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 3)
    [received] = provider_server.requests("anthropic")
    assert received.path == "/v1/messages"
    auth = (received.headers.get("x-api-key"), received.headers.get("authorization"))
    assert auth in (("test", None), (None, "Bearer test"))
    assert received.headers["anthropic-version"]


async def test_anthropic_tool_use(
    provider_server: FakeProviderServer, claude: anthropic.AsyncAnthropic
) -> None:
    provider_server.script(reply_tool("get_weather", {"city": "Paris", "days": 2}))
    message = await ask_claude(claude)
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("get_weather", {"city": "Paris", "days": 2})
    assert block.id.startswith("toolu_")


async def test_openai_tool_calls_and_finish_reasons(
    provider_server: FakeProviderServer,
    oai: openai.AsyncOpenAI,
    claude: anthropic.AsyncAnthropic,
) -> None:
    tool = reply_tool("lint", {"path": "a.py"})
    provider_server.script(tool, tool, reply("cut", finish="content_filter"))
    completion = await ask_openai(oai)
    assert completion.choices[0].finish_reason == "tool_calls"
    [call] = completion.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("lint", {"path": "a.py"})
    chunks = [c async for c in await ask_openai(oai, stream=True)]
    streamed = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert streamed[0].function.name == "lint"
    assert json.loads("".join(t.function.arguments for t in streamed)) == {"path": "a.py"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    refused = await ask_openai(oai)
    assert refused.choices[0].finish_reason == "content_filter"
    provider_server.script(reply("cut", finish="content_filter"))
    assert (await ask_claude(claude)).stop_reason == "refusal"


async def test_openai_stream_collected_fully(
    provider_server: FakeProviderServer, oai: openai.AsyncOpenAI
) -> None:
    provider_server.script(stream(["Hel", "lo", " world"]))
    chunks = [c async for c in await ask_openai(oai, stream=True)]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello world"
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_anthropic_stream_collected_fully(
    provider_server: FakeProviderServer, claude: anthropic.AsyncAnthropic
) -> None:
    provider_server.script(stream(["Hel", "lo", " world"]), stream(["again"]))
    events = [e async for e in await ask_claude(claude, stream=True)]
    assert events[0].type == "message_start"
    assert events[-1].type == "message_stop"
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == "Hello world"
    async with claude.messages.stream(model=CLAUDE, max_tokens=10, messages=MESSAGES) as s:
        final = await s.get_final_message()
    assert final.content[0].text == "again"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"


async def test_anthropic_streamed_tool_use(
    provider_server: FakeProviderServer, claude: anthropic.AsyncAnthropic
) -> None:
    provider_server.script(reply_tool("lint", {"path": "a.py"}, text="Let me check."))
    async with claude.messages.stream(model=CLAUDE, max_tokens=10, messages=MESSAGES) as s:
        final = await s.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"path": "a.py"}  # type: ignore[union-attr]


# --- errors ----------------------------------------------------------------------------------


async def test_openai_rate_limit_carries_retry_after(
    provider_server: FakeProviderServer, oai: openai.AsyncOpenAI
) -> None:
    provider_server.script(rate_limit(retry_after=7, request_id="req_42"))
    with pytest.raises(openai.RateLimitError) as info:
        await ask_openai(oai)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.request_id == "req_42"
    assert info.value.code == "rate_limit_exceeded"


async def test_openai_error_bodies(
    provider_server: FakeProviderServer, oai: openai.AsyncOpenAI
) -> None:
    cases: list[tuple[Behaviour, type[openai.APIStatusError], str | None]] = [
        (quota_exceeded(), openai.RateLimitError, "insufficient_quota"),
        (auth_error(), openai.AuthenticationError, "invalid_api_key"),
        (context_length(), openai.BadRequestError, "context_length_exceeded"),
        (content_filter(), openai.BadRequestError, "content_policy_violation"),
        (model_not_found(), openai.NotFoundError, "model_not_found"),
        (server_error(503), openai.InternalServerError, None),
    ]
    for behaviour, exc_type, code in cases:
        provider_server.script(behaviour)
        with pytest.raises(exc_type) as info:
            await ask_openai(oai)
        assert info.value.status_code == behaviour.status
        assert info.value.code == code
        assert isinstance(info.value.body, dict) and info.value.body["message"]
    provider_server.script(model_not_found())
    with pytest.raises(openai.NotFoundError, match=f"`{GPT}` does not exist"):
        await ask_openai(oai)


async def test_anthropic_overloaded_is_529(
    provider_server: FakeProviderServer, claude: anthropic.AsyncAnthropic
) -> None:
    provider_server.script(overloaded(retry_after=2))
    with pytest.raises(anthropic.OverloadedError) as info:
        await ask_claude(claude)
    assert isinstance(info.value, anthropic.InternalServerError)
    assert info.value.status_code == 529
    assert info.value.type == "overloaded_error"
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.request_id and info.value.request_id.startswith("req_")


async def test_anthropic_error_bodies(
    provider_server: FakeProviderServer, claude: anthropic.AsyncAnthropic
) -> None:
    provider_server.script(quota_exceeded(), context_length(), auth_error(), rate_limit())
    with pytest.raises(anthropic.RateLimitError) as quota:
        await ask_claude(claude)
    assert quota.value.error_code == "enforced_spend_limit_reached"
    with pytest.raises(anthropic.BadRequestError, match="prompt is too long"):
        await ask_claude(claude)
    with pytest.raises(anthropic.AuthenticationError) as auth:
        await ask_claude(claude)
    assert auth.value.type == "authentication_error"
    with pytest.raises(anthropic.RateLimitError) as limited:
        await ask_claude(claude)
    assert limited.value.type == "rate_limit_error" and limited.value.error_code is None


async def test_auth_error_401_both_providers(
    provider_server: FakeProviderServer,
    oai: openai.AsyncOpenAI,
    claude: anthropic.AsyncAnthropic,
) -> None:
    provider_server.set_default(auth_error())
    with pytest.raises(openai.AuthenticationError):
        await ask_openai(oai)
    with pytest.raises(anthropic.AuthenticationError):
        await ask_claude(claude)


async def test_error_headers_and_raw_body(
    provider_server: FakeProviderServer, oai: openai.AsyncOpenAI
) -> None:
    raw = {"error": {"message": "custom", "type": "x", "param": None, "code": "c"}}
    provider_server.script(
        error(502, body=raw, should_retry=False, retry_after_ms=250, headers={"X-Extra": "1"})
    )
    with pytest.raises(openai.InternalServerError) as info:
        await ask_openai(oai)
    headers = info.value.response.headers
    assert (headers["x-should-retry"], headers["retry-after-ms"], headers["x-extra"]) == (
        "false",
        "250",
        "1",
    )
    assert info.value.body == raw["error"]


# --- faults ----------------------------------------------------------------------------------


async def test_hang_ends_in_the_sdk_timeout(
    provider_server: FakeProviderServer,
    oai: openai.AsyncOpenAI,
    claude: anthropic.AsyncAnthropic,
) -> None:
    provider_server.set_default(hang())
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await ask_openai(oai, timeout=0.3)
    with pytest.raises(anthropic.APITimeoutError):
        await ask_claude(claude, timeout=0.3)
    assert time.monotonic() - started < 3
    assert provider_server.request_count == 2


async def test_drop_is_a_connection_error(
    provider_server: FakeProviderServer,
    oai: openai.AsyncOpenAI,
    claude: anthropic.AsyncAnthropic,
) -> None:
    provider_server.script(drop(), drop(reset=True), drop())
    with pytest.raises(openai.APIConnectionError) as info:
        await ask_openai(oai)
    assert not isinstance(info.value, openai.APITimeoutError)
    with pytest.raises(openai.APIConnectionError):
        await ask_openai(oai)
    with pytest.raises(anthropic.APIConnectionError):
        await ask_claude(claude)
    assert provider_server.request_count == 3


async def test_garbage_raises_promptly(
    provider_server: FakeProviderServer,
    oai: openai.AsyncOpenAI,
    claude: anthropic.AsyncAnthropic,
) -> None:
    # Both SDKs let the JSON decoder's error through (json.JSONDecodeError, a ValueError), not
    # an SDK exception: whatever classifies errors must treat it as a provider fault.
    provider_server.set_default(garbage())
    with pytest.raises(json.JSONDecodeError):
        await ask_openai(oai, timeout=2)
    with pytest.raises(json.JSONDecodeError):
        await ask_claude(claude, timeout=2)
    # With a non-JSON content type the SDKs do not raise at all: they return the text.
    provider_server.set_default(garbage("<html>oops</html>", content_type="text/html"))
    assert await ask_openai(oai, timeout=2) == "<html>oops</html>"


async def test_openai_mid_stream_drop(
    provider_server: FakeProviderServer, oai: openai.AsyncOpenAI
) -> None:
    provider_server.script(stream(["a", "b", "c", "d"], fail_after=2))
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in await ask_openai(oai, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "ab"


async def test_anthropic_mid_stream_drop(
    provider_server: FakeProviderServer, claude: anthropic.AsyncAnthropic
) -> None:
    # anthropic 2.14 does not wrap transport errors raised while iterating a stream: the
    # httpx2 exception reaches the caller (the OpenAI SDK wraps it in APIConnectionError).
    provider_server.script(stream(["a", "b", "c", "d"], fail_after=2))
    received: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"):
        async for event in await ask_claude(claude, stream=True):
            if event.type == "content_block_delta":
                received.append(event.delta.text)
    assert received == ["a", "b"]


async def test_slow_stream_times_out_while_iterating(
    provider_server: FakeProviderServer, oai: openai.AsyncOpenAI
) -> None:
    provider_server.script(stream(["a", "b"], chunk_delay_ms=1000))
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        async for _ in await ask_openai(oai, stream=True, timeout=0.2):
            pass
    assert time.monotonic() - started < 0.9


async def test_fail_first_then_default(
    provider_server: FakeProviderServer, oai: openai.AsyncOpenAI
) -> None:
    provider_server.script(fail_first(2, server_error(503)))
    provider_server.set_default(reply("recovered"))
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await ask_openai(oai)
    assert (await ask_openai(oai)).choices[0].message.content == "recovered"
    assert (await ask_openai(oai)).choices[0].message.content == "recovered"
    assert provider_server.request_count == 4


async def test_latency_is_added(
    provider_server: FakeProviderServer, oai: openai.AsyncOpenAI
) -> None:
    provider_server.script(latency(200, reply("slow")))
    started = time.monotonic()
    assert (await ask_openai(oai)).choices[0].message.content == "slow"
    assert time.monotonic() - started >= 0.2


async def test_sdk_retries_are_counted_exactly(provider_server: FakeProviderServer) -> None:
    provider_server.script(fail_first(2, rate_limit(retry_after_ms=1)))
    async with openai.AsyncOpenAI(
        base_url=provider_server.openai_base_url, api_key="test", max_retries=2
    ) as client:
        completion = await ask_openai(client)
    assert completion.choices[0].message.content == reply().text
    assert provider_server.count("/v1/chat/completions") == 3
    assert provider_server.count(provider="anthropic") == 0
    retries = [r.headers["x-stainless-retry-count"] for r in provider_server.requests()]
    assert retries == ["0", "1", "2"]


async def test_per_provider_queues_and_counts(
    provider_server: FakeProviderServer,
    oai: openai.AsyncOpenAI,
    claude: anthropic.AsyncAnthropic,
) -> None:
    provider_server.script(server_error(), provider="openai")
    provider_server.script(reply("from the shared queue"))
    assert provider_server.pending() == {"shared": 1, "openai": 1, "anthropic": 0}
    message = await ask_claude(claude)  # its own queue is empty: takes the shared one
    assert message.content[0].text == "from the shared queue"
    with pytest.raises(openai.InternalServerError):
        await ask_openai(oai)
    assert (await ask_openai(oai)).choices[0].message.content == reply().text
    assert provider_server.request_count == 3
    assert provider_server.count(provider="openai") == 2
    assert provider_server.count("/v1/messages") == 1
    assert provider_server.stats(with_requests=False)["by_path"] == {
        "/v1/messages": 1,
        "/v1/chat/completions": 2,
    }
    provider_server.reset()
    assert provider_server.request_count == 0
    assert provider_server.pending() == {"shared": 0, "openai": 0, "anthropic": 0}


def test_sync_use_and_plain_http() -> None:
    """Without an event loop: the context manager, keep-alive, and non-provider paths."""
    with FakeProviderServer() as server:
        server.script(reply("one"), reply("two"))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            stream_file = sock.makefile("rb")
            for expected in ("one", "two"):  # two requests on one connection
                sock.sendall(_post("/v1/chat/completions", {"model": "m", "messages": []}))
                status, body = _read_response(stream_file)
                assert status == 200
                assert body["choices"][0]["message"]["content"] == expected
            sock.sendall(_post("/nowhere", {}))
            status, body = _read_response(stream_file)
            assert status == 404 and body["error"]["type"] == "invalid_request_error"
            stream_file.close()
        assert server.count("/v1/chat/completions") == 2
        assert server.count("/nowhere") == 1
    assert not server.errors


def _post(path: str, payload: Any) -> bytes:
    body = json.dumps(payload).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _read_response(stream_file: Any) -> tuple[int, Any]:
    status = int(stream_file.readline().split()[1])
    length = 0
    while (line := stream_file.readline()) != b"\r\n":
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return status, json.loads(stream_file.read(length))


@pytest.mark.slow
async def test_control_endpoints_from_a_subprocess() -> None:
    with ProviderServerProcess() as server:
        assert server.script(rate_limit(retry_after=3), provider="openai") == 1
        server.set_default(reply("remote default"))
        async with openai.AsyncOpenAI(
            base_url=server.openai_base_url, api_key="test", max_retries=0
        ) as oai_client:
            with pytest.raises(openai.RateLimitError) as info:
                await ask_openai(oai_client)
            assert info.value.response.headers["retry-after"] == "3"
            completion = await ask_openai(oai_client)
        assert completion.choices[0].message.content == "remote default"
        server.script(stream(["x", "y"]))
        async with anthropic.AsyncAnthropic(
            base_url=server.anthropic_base_url, api_key="test", max_retries=0
        ) as claude_client:
            events = [e async for e in await ask_claude(claude_client, stream=True)]
        assert [e.delta.text for e in events if e.type == "content_block_delta"] == ["x", "y"]
        stats = server.stats()
        assert stats["total"] == 3
        assert stats["by_provider"] == {"openai": 2, "anthropic": 1}
        assert stats["requests"][0]["body"]["model"] == GPT
        assert stats["requests"][0]["behaviour"]["status"] == 429
        server.reset()
        assert server.stats()["total"] == 0
