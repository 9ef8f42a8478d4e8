"""The OpenAI adapter: chat completions through the official SDK, for OpenAI itself or any
OpenAI-compatible server (vLLM, Ollama, LM Studio, ...) reached through ``base_url``.

Choices a user may want to know about:

* The SDK's own retries are off (``max_retries=0``): Bulwark's recovery manager is the only
  retry layer, so every request sent is one attempt it records.
* ``max_tokens`` is sent as ``max_tokens``, which every OpenAI-compatible server and every
  non-reasoning OpenAI model accepts. OpenAI's reasoning models (o-series) want
  ``max_completion_tokens`` instead; leave ``max_tokens`` unset for them.
* A schema request asks for ``response_format={"type": "json_schema", ..., "strict": False}``
  (not strict: any pydantic schema is accepted; the gateway validates the answer).
* ``finish_reason == "content_filter"`` and a structured-output ``refusal`` are failures of
  category ``content_filter``, not answers.
* ``request_id`` is the ``x-request-id`` header, which the SDK attaches to every parsed
  response for free (no ``with_raw_response`` needed).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, TypedDict, cast

import openai
from openai import Omit, omit
from openai.types.chat import ChatCompletionMessageParam
from openai.types.chat.completion_create_params import ResponseFormat

from backend.core.errors import ProviderError
from backend.llm.providers._messages import content_filtered, role_content, timeout_of
from backend.llm.types import ProviderRequest, ProviderResponse, Usage

if TYPE_CHECKING:
    from backend.config import Settings

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class _Arguments(TypedDict):
    model: str
    messages: list[ChatCompletionMessageParam]
    max_tokens: int | Omit
    temperature: float | Omit
    response_format: ResponseFormat | Omit
    timeout: float


class OpenAIProvider:
    """A :class:`~backend.llm.providers.base.Provider` over ``openai.AsyncOpenAI``."""

    def __init__(
        self,
        name: str = "openai",
        *,
        api_key: str,
        base_url: str | None = None,
        default_timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.default_timeout = default_timeout
        # An explicit base URL: the SDK would otherwise read OPENAI_BASE_URL itself.
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or DEFAULT_BASE_URL,
            timeout=default_timeout,
            max_retries=0,
        )

    def _arguments(self, request: ProviderRequest) -> _Arguments:
        response_format: ResponseFormat | Omit = omit
        if request.schema is not None:
            response_format = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema.name,
                    "schema": dict(request.schema.json_schema),
                    "strict": False,
                },
            }
        return {
            "model": request.model,
            "messages": cast("list[ChatCompletionMessageParam]", role_content(request.messages)),
            "max_tokens": omit if request.max_tokens is None else request.max_tokens,
            "temperature": omit if request.temperature is None else request.temperature,
            "response_format": response_format,
            "timeout": timeout_of(request, self.default_timeout),
        }

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        try:
            completion = await self._client.chat.completions.create(**self._arguments(request))
        except Exception as exc:  # CancelledError is a BaseException: never wrapped
            raise ProviderError.wrap(exc) from exc
        request_id = completion._request_id
        choice = completion.choices[0] if completion.choices else None
        finish_reason = choice.finish_reason if choice else None
        if finish_reason == "content_filter":
            raise content_filtered(self.name, "finish_reason content_filter", request_id)
        if choice is not None and choice.message.refusal:
            raise content_filtered(self.name, "refusal", request_id)
        usage = completion.usage
        return ProviderResponse(
            text=(choice.message.content if choice else None) or "",
            usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(),
            request_id=request_id,
            finish_reason=finish_reason,
        )

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[str, None]:
        """Content deltas in order. A filtered answer raises after the chunks it yielded."""
        try:
            chunks = await self._client.chat.completions.create(
                **self._arguments(request), stream=True
            )
        except Exception as exc:
            raise ProviderError.wrap(exc) from exc
        request_id = chunks.response.headers.get("x-request-id")
        finish_reason: str | None = None
        refused = False
        async with chunks:  # closes the response on early exit, error or cancellation
            while True:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    raise ProviderError.wrap(exc) from exc
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                finish_reason = choice.finish_reason or finish_reason
                refused = refused or bool(choice.delta.refusal)
                if choice.delta.content:
                    yield choice.delta.content
        if finish_reason == "content_filter":
            raise content_filtered(self.name, "finish_reason content_filter", request_id)
        if refused:
            raise content_filtered(self.name, "refusal", request_id)

    async def aclose(self) -> None:
        await self._client.close()


def from_settings(settings: Settings) -> OpenAIProvider | None:
    """The OpenAI provider configured by ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``, or
    ``None`` when no key is set."""
    if settings.openai_api_key is None or not settings.openai_api_key.get_secret_value():
        return None
    return OpenAIProvider(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        default_timeout=settings.retry_attempt_timeout,
    )


__all__ = ["DEFAULT_BASE_URL", "OpenAIProvider", "from_settings"]
