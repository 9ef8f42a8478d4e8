"""The LangChain adapter over langchain-core's fake chat models (and small custom ones):
answers, message conversion, schema instruction, streaming, generation options, and errors
wrapped as ``ProviderError`` with the category ``classify`` gives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import openai
import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import BaseModel, Field

from backend.core.errors import ErrorCategory, ProviderError
from backend.llm.providers.base import Provider
from backend.llm.providers.langchain_provider import LangChainProvider, text_of
from backend.llm.types import ChatMessage, OutputSchema, ProviderRequest

C = ErrorCategory


class Recording(GenericFakeChatModel):
    """GenericFakeChatModel that remembers what it was sent, and with which options."""

    received: list[list[BaseMessage]] = Field(default_factory=list)
    options: list[dict[str, Any]] = Field(default_factory=list)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.received.append(list(messages))
        self.options.append(dict(kwargs))
        return super()._generate(messages, stop, run_manager, **kwargs)


class WithKnobs(Recording):
    """A chat model that declares ``max_tokens`` and ``temperature``, as ChatOpenAI does."""

    max_tokens: int | None = None
    temperature: float | None = None


class HTTPStatusError(Exception):
    """What an integration's SDK raises: a status code and response headers."""

    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.headers = headers or {}


class Failing(BaseChatModel):
    """A chat model whose every call (and stream) raises ``error``."""

    error: BaseException

    @property
    def _llm_type(self) -> str:
        return "failing"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise self.error

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise self.error

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        raise self.error
        yield  # an async generator that fails on its first step


def request(*messages: ChatMessage, **kw: Any) -> ProviderRequest:
    return ProviderRequest(model="any", messages=list(messages), **kw)


SYSTEM = ChatMessage("system", "Be brief.")
USER = ChatMessage("user", "Hi there")


def fixed(*answers: AIMessage | str) -> Iterator[AIMessage | str]:
    return iter(list(answers))


async def test_answers_come_back_as_text() -> None:
    provider: Provider = LangChainProvider("fake", FakeListChatModel(responses=["Hello!"]))
    response = await provider.complete(request(USER))
    assert response.text == "Hello!"
    assert response.simulated is False
    await provider.aclose()


async def test_messages_are_converted_by_role() -> None:
    model = Recording(messages=fixed("ok"))
    history = [SYSTEM, USER, ChatMessage("assistant", "Hello"), ChatMessage("user", "Again")]
    await LangChainProvider("fake", model).complete(request(*history))
    [sent] = model.received
    assert [type(m) for m in sent] == [SystemMessage, HumanMessage, AIMessage, HumanMessage]
    assert [m.content for m in sent] == ["Be brief.", "Hi there", "Hello", "Again"]


async def test_content_blocks_usage_and_ids_are_read() -> None:
    answer = AIMessage(
        content=[
            {"type": "text", "text": "Part one. "},
            {"type": "tool_use", "id": "t1", "name": "x", "input": {}},
            "Part two.",
        ],
        usage_metadata={"input_tokens": 12, "output_tokens": 5, "total_tokens": 17},
        response_metadata={"finish_reason": "stop"},
        id="chatcmpl-123",
    )
    response = await LangChainProvider("fake", Recording(messages=fixed(answer))).complete(
        request(USER)
    )
    assert response.text == "Part one. Part two."
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 5)
    assert response.request_id == "chatcmpl-123"
    assert response.finish_reason == "stop"


def test_text_of_plain_strings_and_blocks() -> None:
    assert text_of("plain") == "plain"
    assert text_of([{"type": "reasoning", "reasoning": "hmm"}, {"type": "text", "text": "a"}]) == (
        "a"
    )


class Answer(BaseModel):
    verdict: str
    score: int


async def test_schema_instruction_extends_the_system_prompt() -> None:
    model = Recording(messages=fixed('{"verdict": "ok", "score": 3}'))
    response = await LangChainProvider("fake", model).complete(
        request(SYSTEM, USER, schema=OutputSchema.of(Answer))
    )
    assert Answer.model_validate_json(response.text) == Answer(verdict="ok", score=3)
    [sent] = model.received
    assert [type(m) for m in sent] == [SystemMessage, HumanMessage]
    system = str(sent[0].content)
    assert system.startswith("Be brief.\n\n")
    assert "JSON" in system and "Answer" in system and '"verdict"' in system


async def test_schema_instruction_becomes_the_system_prompt_when_there_is_none() -> None:
    model = Recording(messages=fixed("{}"))
    await LangChainProvider("fake", model).complete(request(USER, schema=OutputSchema.of(Answer)))
    [sent] = model.received
    assert [type(m) for m in sent] == [SystemMessage, HumanMessage]
    assert '"score"' in str(sent[0].content)


async def test_options_are_passed_only_to_models_that_declare_them() -> None:
    plain = Recording(messages=fixed("a"))
    await LangChainProvider("fake", plain).complete(request(USER, max_tokens=50, temperature=0))
    assert plain.options == [{}]
    knobs = WithKnobs(messages=fixed("a", "b"))
    provider = LangChainProvider("fake", knobs)
    await provider.complete(request(USER, max_tokens=50, temperature=0.0))
    await provider.complete(request(USER))
    assert knobs.options == [{"max_tokens": 50, "temperature": 0.0}, {}]


async def test_stream_yields_the_chunks_text() -> None:
    provider = LangChainProvider("fake", FakeListChatModel(responses=["streamed"]))
    chunks = [chunk async for chunk in provider.stream(request(USER))]
    assert "".join(chunks) == "streamed"
    assert len(chunks) == len("streamed")  # FakeListChatModel streams character by character


async def test_stream_of_a_generic_fake_model() -> None:
    model = Recording(messages=fixed("one two three"))
    chunks = [c async for c in LangChainProvider("fake", model).stream(request(SYSTEM, USER))]
    assert "".join(chunks) == "one two three"
    assert len(chunks) > 1
    assert [type(m) for m in model.received[0]] == [SystemMessage, HumanMessage]


def rate_limit_error() -> openai.RateLimitError:
    """What langchain-openai re-raises on HTTP 429."""
    response = httpx2.Response(
        429,
        headers={"retry-after": "3", "x-request-id": "req_1"},
        request=httpx2.Request("POST", "https://api.openai.com/v1/chat/completions"),
    )
    body = {"error": {"message": "Rate limit reached", "type": "requests", "code": None}}
    return openai.RateLimitError("Rate limit reached", response=response, body=body)


@pytest.mark.parametrize(
    ("error", "category", "transient", "status", "retry_after"),
    [
        (HTTPStatusError(429, {"retry-after": "2"}), C.RATE_LIMIT, True, 429, 2.0),
        (HTTPStatusError(503), C.SERVER_ERROR, True, 503, None),
        (HTTPStatusError(401), C.AUTH_ERROR, False, 401, None),
        (rate_limit_error(), C.RATE_LIMIT, True, 429, 3.0),
        (ValueError("something broke"), C.UNKNOWN, False, None, None),
    ],
    ids=["status-429", "status-503", "status-401", "openai-429", "value-error"],
)
async def test_errors_are_wrapped_with_their_category(
    error: Exception,
    category: ErrorCategory,
    transient: bool,
    status: int | None,
    retry_after: float | None,
) -> None:
    provider = LangChainProvider("fake", Failing(error=error))
    for call in (provider.complete, lambda r: anext(provider.stream(r))):
        with pytest.raises(ProviderError) as caught:
            await call(request(USER))
        c = caught.value.classification
        assert (c.category, c.transient, c.status_code) == (category, transient, status)
        assert c.retry_after_seconds == retry_after
        assert caught.value.__cause__ is error


async def test_provider_errors_pass_through_unwrapped() -> None:
    inner = ProviderError.wrap(HTTPStatusError(529))
    with pytest.raises(ProviderError) as caught:
        await LangChainProvider("fake", Failing(error=inner)).complete(request(USER))
    assert caught.value is inner
    assert caught.value.category == C.OVERLOADED


class Slow(BaseChatModel):
    """A chat model that takes ten seconds to answer."""

    started: asyncio.Event = Field(default_factory=asyncio.Event)

    @property
    def _llm_type(self) -> str:
        return "slow"

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError

    async def _agenerate(self, *args: Any, **kwargs: Any) -> ChatResult:
        self.started.set()
        await asyncio.sleep(10)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="late"))])


async def test_cancellation_is_never_wrapped() -> None:
    model = Slow()
    task = asyncio.create_task(LangChainProvider("slow", model).complete(request(USER)))
    await model.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_slow_model_is_cancelled_by_the_callers_timeout() -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(LangChainProvider("slow", Slow()).complete(request(USER)), 0.05)
