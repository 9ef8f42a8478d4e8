"""The Anthropic adapter: the Messages API through the official SDK.

Choices a user may want to know about:

* The SDK's own retries are off (``max_retries=0``): Bulwark's recovery manager is the only
  retry layer, so every request sent is one attempt it records.
* System messages are joined (blank line between them) into the ``system`` parameter; the
  other messages keep their order.
* ``max_tokens`` is required by the API: :data:`DEFAULT_MAX_TOKENS` when the request has none.
* A schema request forces one tool named after the schema (``tool_choice={"type": "tool"}``)
  whose ``input_schema`` is the schema; the tool call's ``input`` comes back as JSON text
  (streamed: the ``input_json_delta`` pieces, which join into that JSON).
* ``temperature`` is sent through ``extra_body``: this SDK version dropped the typed
  parameter, the Messages API still accepts it (some newer models may reject it).
* ``stop_reason == "refusal"`` is a failure of category ``content_filter``, not an answer.
* ``request_id`` is the ``request-id`` header, which the SDK attaches to every parsed response.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, TypedDict, cast

import anthropic
from anthropic import Omit, omit
from anthropic.types import (
    Message,
    MessageParam,
    RawContentBlockDelta,
    ToolChoiceToolParam,
    ToolParam,
)

from backend.core.errors import ProviderError
from backend.llm.providers._messages import content_filtered, split_system, timeout_of
from backend.llm.types import ProviderRequest, ProviderResponse, Usage

if TYPE_CHECKING:
    from backend.config import Settings

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 1024


class _Arguments(TypedDict):
    model: str
    messages: list[MessageParam]
    system: str | Omit
    max_tokens: int
    extra_body: dict[str, object] | None
    tools: list[ToolParam] | Omit
    tool_choice: ToolChoiceToolParam | Omit
    timeout: float


class AnthropicProvider:
    """A :class:`~backend.llm.providers.base.Provider` over ``anthropic.AsyncAnthropic``."""

    def __init__(
        self,
        name: str = "anthropic",
        *,
        api_key: str,
        base_url: str | None = None,
        default_timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.default_timeout = default_timeout
        # An explicit base URL: the SDK would otherwise read ANTHROPIC_BASE_URL itself.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url or DEFAULT_BASE_URL,
            timeout=default_timeout,
            max_retries=0,
        )

    def _arguments(self, request: ProviderRequest) -> _Arguments:
        system, messages = split_system(request.messages)
        tools: list[ToolParam] | Omit = omit
        tool_choice: ToolChoiceToolParam | Omit = omit
        if request.schema is not None:
            name = request.schema.name
            tools = [{"name": name, "input_schema": dict(request.schema.json_schema)}]
            tool_choice = {"type": "tool", "name": name}
        # This SDK has no typed `temperature` parameter; the API still takes it.
        temperature = request.temperature
        extra_body: dict[str, object] | None = (
            None if temperature is None else {"temperature": temperature}
        )
        return {
            "model": request.model,
            "messages": cast("list[MessageParam]", messages),
            "system": omit if system is None else system,
            "max_tokens": DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens,
            "extra_body": extra_body,
            "tools": tools,
            "tool_choice": tool_choice,
            "timeout": timeout_of(request, self.default_timeout),
        }

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        try:
            message = await self._client.messages.create(**self._arguments(request))
        except Exception as exc:  # CancelledError is a BaseException: never wrapped
            raise ProviderError.wrap(exc) from exc
        request_id = message._request_id
        if message.stop_reason == "refusal":
            raise content_filtered(self.name, "stop_reason refusal", request_id)
        return ProviderResponse(
            text=_text(message, request.schema.name if request.schema else None),
            usage=Usage(message.usage.input_tokens, message.usage.output_tokens),
            request_id=request_id,
            finish_reason=message.stop_reason,
        )

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[str, None]:
        """Text deltas in order (for a schema request, the tool input's JSON pieces). A refused
        answer raises after the chunks it yielded."""
        json_input = request.schema is not None
        try:
            events = await self._client.messages.create(**self._arguments(request), stream=True)
        except Exception as exc:
            raise ProviderError.wrap(exc) from exc
        request_id = events.response.headers.get("request-id")
        stop_reason: str | None = None
        async with events:  # closes the response on early exit, error or cancellation
            while True:
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    break
                except Exception as exc:  # the SDK lets httpx2 errors through mid-stream
                    raise ProviderError.wrap(exc) from exc
                if event.type == "content_block_delta":
                    piece = _delta_text(event.delta, json_input)
                    if piece:
                        yield piece
                elif event.type == "message_delta":
                    stop_reason = event.delta.stop_reason or stop_reason
        if stop_reason == "refusal":
            raise content_filtered(self.name, "stop_reason refusal", request_id)

    async def aclose(self) -> None:
        await self._client.close()


def _text(message: Message, tool_name: str | None) -> str:
    """The forced tool's input as JSON for a schema request, else the text blocks joined."""
    if tool_name is not None:
        for block in message.content:
            if block.type == "tool_use" and block.name == tool_name:
                return json.dumps(block.input)
    return "".join(block.text for block in message.content if block.type == "text")


def _delta_text(delta: RawContentBlockDelta, json_input: bool) -> str:
    if json_input:
        return delta.partial_json if delta.type == "input_json_delta" else ""
    return delta.text if delta.type == "text_delta" else ""


def from_settings(settings: Settings) -> AnthropicProvider | None:
    """The Anthropic provider configured by ``ANTHROPIC_API_KEY`` / ``ANTHROPIC_BASE_URL``, or
    ``None`` when no key is set."""
    if settings.anthropic_api_key is None or not settings.anthropic_api_key.get_secret_value():
        return None
    return AnthropicProvider(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        default_timeout=settings.retry_attempt_timeout,
    )


__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MAX_TOKENS", "AnthropicProvider", "from_settings"]
