"""The LangChain adapter: any langchain-core ``BaseChatModel`` (``ChatOpenAI``,
``ChatAnthropic``, ``ChatOllama``, a fake for tests, ...) registered under a provider name
becomes a route target.

Choices a user may want to know about:

* The chat model decides the real model; the ``model`` part of the target
  (``mychat:whatever``) is only passed through for the record.
* ``max_tokens`` / ``temperature`` of the request are passed to ``ainvoke``/``astream`` only
  when the chat model declares a field of that name (``ChatOpenAI`` and ``ChatAnthropic`` do),
  since models that do not know them may reject or silently drop unknown keyword arguments.
  ``timeout`` is not passed: configure it on the chat model; the recovery manager enforces the
  per-attempt timeout anyway.
* A schema request does not use ``with_structured_output`` (which not every chat model
  implements): the system prompt gets an instruction to answer with JSON matching the schema,
  and the gateway validates (and, once, repairs) the answer.
* Text is the message's ``content``: a string, or the ``text`` of its text content blocks,
  joined; other blocks (tool calls, reasoning) are dropped. Usage comes from
  ``usage_metadata`` when the integration reports it.
* Any exception the chat model raises becomes ``ProviderError.wrap(exc)``: ``classify``
  understands the SDK errors integrations re-raise (``openai.RateLimitError`` from
  ``langchain-openai``, ...) and anything with a ``status_code``. Cancellation is never
  wrapped.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from backend.core.errors import ProviderError
from backend.llm.types import ChatMessage, OutputSchema, ProviderRequest, ProviderResponse, Usage

_MESSAGE_TYPES: dict[str, type[BaseMessage]] = {
    "system": SystemMessage,
    "user": HumanMessage,
    "assistant": AIMessage,
}


class LangChainProvider:
    """A :class:`~backend.llm.providers.base.Provider` over a langchain-core chat model."""

    def __init__(self, name: str, model: BaseChatModel) -> None:
        self.name = name
        self.model = model

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        messages = to_langchain(request.messages, request.schema)
        try:
            message = await self.model.ainvoke(messages, **self._options(request))
        except ProviderError:
            raise
        except Exception as exc:  # CancelledError is a BaseException: never wrapped
            raise ProviderError.wrap(exc) from exc
        return ProviderResponse(
            text=text_of(message.content),
            usage=_usage(message),
            request_id=message.id,
            finish_reason=_finish_reason(message.response_metadata),
        )

    async def stream(self, request: ProviderRequest) -> AsyncIterator[str]:
        messages = to_langchain(request.messages, request.schema)
        try:
            async for chunk in self.model.astream(messages, **self._options(request)):
                text = text_of(chunk.content)
                if text:
                    yield text
        except ProviderError:
            raise
        except Exception as exc:  # CancelledError and GeneratorExit are BaseExceptions
            raise ProviderError.wrap(exc) from exc

    async def aclose(self) -> None:
        """Nothing to release: the chat model owns its clients."""

    def _options(self, request: ProviderRequest) -> dict[str, Any]:
        """Generation knobs the chat model declares (see the module docstring)."""
        fields = type(self.model).model_fields
        options = {"max_tokens": request.max_tokens, "temperature": request.temperature}
        return {k: v for k, v in options.items() if v is not None and k in fields}


def to_langchain(
    messages: Sequence[ChatMessage], schema: OutputSchema | None = None
) -> list[BaseMessage]:
    """langchain-core messages for ``messages``; with ``schema``, the JSON instruction is
    appended to the first system message (or sent as a system message of its own, first)."""
    converted = [_MESSAGE_TYPES[m.role](content=m.content) for m in messages]
    if schema is None:
        return converted
    instruction = schema_instruction(schema)
    for i, message in enumerate(converted):
        if isinstance(message, SystemMessage):
            converted[i] = SystemMessage(content=f"{text_of(message.content)}\n\n{instruction}")
            return converted
    return [SystemMessage(content=instruction), *converted]


def schema_instruction(schema: OutputSchema) -> str:
    return (
        f"Answer with a single JSON object (no prose, no Markdown fences) that is a valid "
        f"{schema.name} and matches this JSON Schema:\n"
        f"{json.dumps(schema.json_schema, separators=(',', ':'))}"
    )


def text_of(content: str | Sequence[str | Mapping[str, Any]]) -> str:
    """The text of a message's content: the string, or its text blocks joined."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "".join(parts)


def _usage(message: AIMessage) -> Usage:
    usage = message.usage_metadata
    if not usage:
        return Usage()
    return Usage(
        input_tokens=usage.get("input_tokens", 0), output_tokens=usage.get("output_tokens", 0)
    )


def _finish_reason(metadata: Mapping[str, Any]) -> str | None:
    reason = metadata.get("finish_reason", metadata.get("stop_reason"))
    return str(reason) if reason is not None else None


__all__ = ["LangChainProvider", "schema_instruction", "text_of", "to_langchain"]
