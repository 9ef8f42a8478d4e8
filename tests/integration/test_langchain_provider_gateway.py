"""LangChain chat models as gateway providers: langchain-core's fake chat models and a small
custom BaseChatModel, registered with ``LangChainProvider``, answering through the real gateway
(retries, breakers, history in SQLite)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import BaseModel, PrivateAttr

from backend.config import Settings
from backend.core.errors import AllTargetsFailedError, ErrorCategory
from backend.llm.gateway import LLMGateway
from backend.llm.langchain_model import ResilientChatModel
from backend.llm.providers.base import Provider
from backend.llm.providers.langchain_provider import LangChainProvider
from tests.integration.gateway_helpers import history

TARGET = "mychat:any"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]

MakeGateway = Callable[..., Awaitable[LLMGateway]]


class StatusError(Exception):
    """What an HTTP-backed integration raises: an error carrying status_code and headers."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers = headers


class FlakyChat(BaseChatModel):
    """Fails its first ``failures`` calls with ``status`` (Retry-After 20 ms), then answers
    ``answer``; keeps the messages of every call."""

    answer: str = "recovered"
    status: int = 429
    failures: int = 1
    _calls: list[list[BaseMessage]] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "flaky"

    @property
    def calls(self) -> list[list[BaseMessage]]:
        return self._calls

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._calls.append(messages)
        if len(self._calls) <= self.failures:
            raise StatusError(self.status, "slow down", {"retry-after-ms": "20"})
        message = AIMessage(
            content=self.answer,
            usage_metadata={"input_tokens": 5, "output_tokens": 2, "total_tokens": 7},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


class Verdict(BaseModel):
    approved: bool
    reason: str


@pytest.fixture
async def make_gateway(sqlite_url: str) -> AsyncIterator[MakeGateway]:
    gateways: list[LLMGateway] = []

    async def make(
        providers: list[Provider], routes: dict[str, list[str]] | None = None
    ) -> LLMGateway:
        settings = Settings(
            database_url=sqlite_url,
            routes=routes or {"chat": [TARGET]},
            retry_initial_wait=0.01,
            retry_max_wait=0.05,
            history_flush_seconds=0.05,
        )
        gateway = await LLMGateway.create(settings, providers=providers, migrate=True)
        gateways.append(gateway)
        return gateway

    yield make
    for gateway in gateways:
        await gateway.aclose()


async def test_generic_fake_chat_model_answers_through_the_gateway(
    make_gateway: MakeGateway, sqlite_url: str
) -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage(content="Looks fine to me.")]))
    gateway = await make_gateway([LangChainProvider("mychat", model)])

    result = await gateway.complete(MESSAGES, route="chat", agent="tester", task_id="t1")

    assert (result.text, result.target, result.attempts) == ("Looks fine to me.", TARGET, 1)
    await gateway.flush_history()
    calls, attempts = await history(sqlite_url)
    assert [(c.id, c.agent, c.task_id, c.route, c.target, c.outcome) for c in calls] == [
        (result.call_id, "tester", "t1", "chat", TARGET, "success")
    ]
    assert [(a.target, a.outcome, a.decision) for a in attempts] == [(TARGET, "success", "succeed")]


async def test_fake_list_chat_model_answers_and_streams(
    make_gateway: MakeGateway, sqlite_url: str
) -> None:
    model = FakeListChatModel(responses=["first answer", "streamed answer"])
    gateway = await make_gateway([])
    gateway.register_provider(LangChainProvider("mychat", model))

    result = await gateway.complete(MESSAGES, route="chat")
    chunks = [chunk async for chunk in gateway.stream(MESSAGES, route="chat")]

    assert result.text == "first answer"
    assert len(chunks) > 1 and "".join(chunks) == "streamed answer"
    await gateway.flush_history()
    calls, _ = await history(sqlite_url)
    assert [(c.target, c.outcome) for c in calls] == [(TARGET, "success")] * 2


async def test_a_429_from_a_custom_model_is_retried_by_bulwark(
    make_gateway: MakeGateway, sqlite_url: str
) -> None:
    model = FlakyChat()
    gateway = await make_gateway([LangChainProvider("mychat", model)])

    result = await gateway.complete(MESSAGES, route="chat", agent="tester")

    assert (result.text, result.attempts) == ("recovered", 2)
    assert (result.usage.input_tokens, result.usage.output_tokens) == (5, 2)
    assert len(model.calls) == 2
    await gateway.flush_history()
    calls, attempts = await history(sqlite_url)
    assert [(c.agent, c.outcome, c.attempts, c.input_tokens) for c in calls] == [
        ("tester", "success", 2, 5)
    ]
    assert [
        (a.target, a.outcome, a.http_status, a.category, a.retry_after_ms, a.decision)
        for a in attempts
    ] == [
        (TARGET, "failure", 429, "rate_limit", 20, "retry"),
        (TARGET, "success", None, None, None, "succeed"),
    ]


async def test_a_permanent_error_is_not_retried(make_gateway: MakeGateway, sqlite_url: str) -> None:
    model = FlakyChat(status=401, failures=5)
    gateway = await make_gateway([LangChainProvider("mychat", model)])

    with pytest.raises(AllTargetsFailedError) as caught:
        await gateway.complete(MESSAGES, route="chat")

    assert caught.value.category is ErrorCategory.AUTH_ERROR
    assert len(model.calls) == 1
    await gateway.flush_history()
    _, attempts = await history(sqlite_url)
    assert [(a.http_status, a.category, a.decision) for a in attempts] == [
        (401, "auth_error", "give_up")
    ]


async def test_a_failing_langchain_model_falls_back_to_another(
    make_gateway: MakeGateway,
) -> None:
    broken = FlakyChat(status=503, failures=100)
    backup = FakeListChatModel(responses=["from the backup"])
    gateway = await make_gateway(
        [LangChainProvider("mychat", broken), LangChainProvider("backup", backup)],
        routes={"chat": [TARGET, "backup:any"]},
    )

    result = await gateway.complete(MESSAGES, route="chat")

    assert (result.text, result.target) == ("from the backup", "backup:any")
    assert len(broken.calls) == 4  # 1 + the default 3 retries


async def test_structured_output_with_a_langchain_model(make_gateway: MakeGateway) -> None:
    model = FlakyChat(answer='{"approved": true, "reason": "tidy"}', failures=0)
    gateway = await make_gateway([LangChainProvider("mychat", model)])

    result = await gateway.complete(MESSAGES, route="chat", schema=Verdict)

    assert result.parsed == Verdict(approved=True, reason="tidy")
    system = model.calls[0][0]
    assert system.type == "system" and "Verdict" in str(system.content)


async def test_langchain_both_ways(make_gateway: MakeGateway, sqlite_url: str) -> None:
    """An LCEL chain on ResilientChatModel, over a route whose target is a LangChain model."""
    gateway = await make_gateway([LangChainProvider("mychat", FlakyChat(answer="both ways"))])
    chain = ResilientChatModel(gateway=gateway, route="chat") | StrOutputParser()

    assert await chain.ainvoke("hi") == "both ways"

    await gateway.flush_history()
    calls, _ = await history(sqlite_url)
    assert [(c.agent, c.target, c.attempts) for c in calls] == [("langchain", TARGET, 2)]
