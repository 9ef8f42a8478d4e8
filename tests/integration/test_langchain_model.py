"""ResilientChatModel in LCEL chains: the real gateway, the real SDKs against the fake provider
server, and the call history in SQLite."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from pydantic import BaseModel

from backend.core.errors import (
    AllTargetsFailedError,
    AllTargetsUnavailableError,
    BulwarkError,
    ErrorCategory,
    PermanentError,
    TransientError,
)
from backend.llm.gateway import LLMGateway
from backend.llm.langchain_model import ResilientChatModel, StopCutter
from tests.fakes.behaviours import (
    Behaviour,
    auth_error,
    bad_request,
    hang,
    reply,
    reply_json,
    server_error,
    stream,
)
from tests.fakes.provider_server import FakeProviderServer
from tests.integration.gateway_helpers import ANTHROPIC, OPENAI, gateway_settings, history

MakeGateway = Callable[..., Awaitable[LLMGateway]]

DEFAULT_REPLY = "Hello from the fake provider."  # the fake server's answer when unscripted

PROMPT = ChatPromptTemplate.from_messages(
    [("system", "You review code. Be brief."), ("user", "Review: {code}")]
)


class Verdict(BaseModel):
    approved: bool
    reason: str


@pytest.fixture
async def make_gateway(
    provider_server: FakeProviderServer, sqlite_url: str
) -> AsyncIterator[MakeGateway]:
    gateways: list[LLMGateway] = []

    async def make(routes: dict[str, list[str]], **overrides: Any) -> LLMGateway:
        settings = gateway_settings(provider_server, sqlite_url, routes, **overrides)
        gateway = await LLMGateway.create(settings, migrate=True)
        gateways.append(gateway)
        return gateway

    yield make
    for gateway in gateways:
        await gateway.aclose()


async def test_chain_answers_through_the_gateway(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, sqlite_url: str
) -> None:
    provider_server.script(reply("Looks good.", usage=(12, 3)))
    gateway = await make_gateway({"review": [OPENAI]})
    model = ResilientChatModel(gateway=gateway, route="review", task_id="t1")

    answer = await (PROMPT | model | StrOutputParser()).ainvoke({"code": "x = 1"})

    assert answer == "Looks good."
    assert provider_server.bodies()[0]["messages"] == [
        {"role": "system", "content": "You review code. Be brief."},
        {"role": "user", "content": "Review: x = 1"},
    ]
    await gateway.flush_history()
    calls, _ = await history(sqlite_url)
    assert [(c.agent, c.task_id, c.route, c.target, c.outcome) for c in calls] == [
        ("langchain", "t1", "review", OPENAI, "success")
    ]


async def test_answer_carries_target_call_id_and_usage(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, sqlite_url: str
) -> None:
    provider_server.script(reply("ok", usage=(12, 3)))
    gateway = await make_gateway({"default": [ANTHROPIC]})
    model = ResilientChatModel(gateway=gateway)

    message = await model.ainvoke("hi")

    assert isinstance(message, AIMessage)
    assert message.usage_metadata == {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15}
    metadata = message.response_metadata
    assert (metadata["target"], metadata["model_name"], metadata["attempts"]) == (
        ANTHROPIC,
        ANTHROPIC,
        1,
    )
    assert metadata["simulated"] is False
    await gateway.flush_history()
    calls, _ = await history(sqlite_url)
    assert [c.id for c in calls] == [metadata["call_id"]]


async def test_a_503_is_retried_and_recorded(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, sqlite_url: str
) -> None:
    provider_server.script(server_error(503), reply("second time lucky"))
    gateway = await make_gateway({"review": [OPENAI]})
    chain = PROMPT | ResilientChatModel(gateway=gateway, route="review") | StrOutputParser()

    assert await chain.ainvoke({"code": "x = 1"}) == "second time lucky"

    assert provider_server.request_count == 2
    await gateway.flush_history()
    calls, attempts = await history(sqlite_url)
    assert [(c.agent, c.outcome, c.attempts) for c in calls] == [("langchain", "success", 2)]
    assert [(a.outcome, a.http_status, a.category, a.decision) for a in attempts] == [
        ("failure", 503, "server_error", "retry"),
        ("success", None, None, "succeed"),
    ]


async def test_fallback_from_an_openai_outage_to_anthropic_inside_the_chain(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, sqlite_url: str
) -> None:
    provider_server.set_default(server_error(503), provider="openai")
    provider_server.set_default(reply("from claude"), provider="anthropic")
    gateway = await make_gateway({"review": [OPENAI, ANTHROPIC]}, retry_max_retries=1)
    model = ResilientChatModel(gateway=gateway, route="review")

    message = await (PROMPT | model).ainvoke({"code": "x = 1"})

    assert (message.content, message.response_metadata["target"]) == ("from claude", ANTHROPIC)
    assert provider_server.count(provider="openai") == 2
    await gateway.flush_history()
    _, attempts = await history(sqlite_url)
    assert [(a.target, a.decision) for a in attempts] == [
        (OPENAI, "retry"),
        (OPENAI, "fallback"),
        (ANTHROPIC, "succeed"),
    ]


async def test_abatch_makes_one_gateway_call_per_input(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, sqlite_url: str
) -> None:
    provider_server.script(reply("one"), reply("two"), reply("three"))
    gateway = await make_gateway({"review": [OPENAI]})
    chain = PROMPT | ResilientChatModel(gateway=gateway, route="review") | StrOutputParser()

    answers = await chain.abatch([{"code": c} for c in ("a", "b", "c")], {"max_concurrency": 1})

    assert answers == ["one", "two", "three"]
    await gateway.flush_history()
    calls, _ = await history(sqlite_url)
    assert len(calls) == 3
    assert {(c.agent, c.outcome) for c in calls} == {("langchain", "success")}


async def test_astream_yields_the_chunks(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, sqlite_url: str
) -> None:
    provider_server.script(server_error(503), stream(["Hel", "lo", "!"]))
    gateway = await make_gateway({"chat": [ANTHROPIC]})
    model = ResilientChatModel(gateway=gateway, route="chat")

    chunks = [c.content async for c in model.astream("hi")]
    texts = [t async for t in (model | StrOutputParser()).astream("hi again")]

    assert [c for c in chunks if c] == ["Hel", "lo", "!"]  # retried before the first chunk
    assert "".join(texts) == DEFAULT_REPLY
    await gateway.flush_history()
    calls, _ = await history(sqlite_url)
    assert [(c.agent, c.outcome) for c in calls] == [("langchain", "success")] * 2


ERRORS: list[tuple[str, Behaviour, type[BulwarkError], ErrorCategory]] = [
    ("auth_error", auth_error(), AllTargetsFailedError, ErrorCategory.AUTH_ERROR),
    ("invalid_request", bad_request("bad knob"), PermanentError, ErrorCategory.INVALID_REQUEST),
    ("server_error", server_error(502), AllTargetsUnavailableError, ErrorCategory.SERVER_ERROR),
]


@pytest.mark.parametrize(
    ("behaviour", "kind", "category"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
async def test_errors_surface_as_classified_bulwark_errors(
    make_gateway: MakeGateway,
    provider_server: FakeProviderServer,
    sqlite_url: str,
    behaviour: Behaviour,
    kind: type[BulwarkError],
    category: ErrorCategory,
) -> None:
    provider_server.set_default(behaviour)
    gateway = await make_gateway({"review": [OPENAI]}, retry_max_retries=1)
    chain = PROMPT | ResilientChatModel(gateway=gateway, route="review") | StrOutputParser()

    with pytest.raises(BulwarkError) as caught:
        await chain.ainvoke({"code": "x"})

    assert isinstance(caught.value, kind)
    assert caught.value.category is category
    await gateway.flush_history()
    calls, _ = await history(sqlite_url)
    assert [(c.agent, c.outcome, c.category) for c in calls] == [
        ("langchain", "failure", category.value)
    ]


async def test_stream_errors_are_bulwark_errors(
    make_gateway: MakeGateway, provider_server: FakeProviderServer
) -> None:
    provider_server.script(stream(["one ", "two ", "three"], fail_after=1))
    gateway = await make_gateway({"chat": [OPENAI]})
    received: list[str] = []

    with pytest.raises(TransientError) as caught:
        async for chunk in ResilientChatModel(gateway=gateway, route="chat").astream("hi"):
            received.append(str(chunk.content))

    assert received == ["one "]
    assert caught.value.category is ErrorCategory.CONNECTION_ERROR
    assert provider_server.request_count == 1  # not retried once text was sent


async def test_per_call_options_override_the_fields(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, sqlite_url: str
) -> None:
    gateway = await make_gateway({"review": [OPENAI], "code": [ANTHROPIC]})
    model = ResilientChatModel(gateway=gateway, route="review", max_tokens=50, temperature=0.1)

    first = await model.ainvoke("hi", route="code", agent="coder", max_tokens=7)
    second = await model.bind(task_id="t9").ainvoke("hi")

    assert first.response_metadata["target"] == ANTHROPIC
    assert second.response_metadata["target"] == OPENAI
    [anthropic_body], [openai_body] = (
        provider_server.bodies("anthropic"),
        provider_server.bodies("openai"),
    )
    assert (anthropic_body["max_tokens"], anthropic_body["temperature"]) == (7, 0.1)
    assert (openai_body["max_tokens"], openai_body["temperature"]) == (50, 0.1)
    await gateway.flush_history()
    calls, _ = await history(sqlite_url)
    assert [(c.agent, c.task_id, c.route) for c in calls] == [
        ("coder", None, "code"),
        ("langchain", "t9", "review"),
    ]


async def test_unknown_keyword_arguments_are_refused(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway({"review": [OPENAI]})
    model = ResilientChatModel(gateway=gateway)

    with pytest.raises(TypeError, match="tools"):
        await model.ainvoke("hi", tools=[{"name": "search"}])


async def test_timeout_seconds_bounds_the_whole_call(
    make_gateway: MakeGateway, provider_server: FakeProviderServer
) -> None:
    provider_server.set_default(hang())
    gateway = await make_gateway({"review": [OPENAI, ANTHROPIC]}, retry_attempt_timeout=0.3)
    model = ResilientChatModel(gateway=gateway, route="review", timeout_seconds=0.5)
    started = time.monotonic()

    with pytest.raises(TransientError) as caught:
        await model.ainvoke("hi")

    assert time.monotonic() - started < 1.2
    assert caught.value.category is ErrorCategory.TIMEOUT


async def test_structured_output_goes_through_the_gateway_schema(
    make_gateway: MakeGateway, provider_server: FakeProviderServer
) -> None:
    provider_server.script(
        reply("approved, obviously"), reply_json({"approved": True, "reason": "fine"})
    )
    gateway = await make_gateway({"review": [OPENAI]})
    model = ResilientChatModel(gateway=gateway, route="review")

    verdict = await (PROMPT | model.with_structured_output(Verdict)).ainvoke({"code": "x"})

    assert verdict == Verdict(approved=True, reason="fine")
    assert provider_server.request_count == 2  # the gateway's one repair request
    assert provider_server.bodies()[0]["response_format"]["type"] == "json_schema"


async def test_stop_sequences_cut_the_answer(
    make_gateway: MakeGateway, provider_server: FakeProviderServer, sqlite_url: str
) -> None:
    provider_server.script(
        reply("Thought: add a test\nObservation: made up"),
        stream(["Thought: add", " a test\nObs", "ervation: made", " up"]),
    )
    gateway = await make_gateway({"chat": [OPENAI]})
    model = ResilientChatModel(gateway=gateway, route="chat")

    answer = await model.ainvoke("hi", stop=["\nObservation"])
    chunks = [c.content async for c in model.astream("hi", stop=["\nObservation"])]

    assert answer.content == "Thought: add a test"
    assert "".join(str(c) for c in chunks) == "Thought: add a test"
    await gateway.flush_history()
    calls, _ = await history(sqlite_url)
    assert [c.outcome for c in calls] == ["success", "success"]  # the stream was read to its end


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        (["abc"], "abc"),
        (["ab", "cST", "OP", "x"], "abc"),
        (["abS", "T"], "abST"),  # a held-back prefix that never became a stop sequence
        (["STOP"], ""),
        (["aS", "Tb", "STOP"], "aSTb"),
    ],
)
def test_stop_cutter(chunks: list[str], expected: str) -> None:
    cutter = StopCutter(["STOP"])
    released = [cutter.feed(chunk) for chunk in chunks if not cutter.stopped]
    assert "".join(released) + cutter.flush() == expected


# --- the blocking API: the gateway lives on a loop in another thread --------------------------


@pytest.fixture
def background_gateway(
    provider_server: FakeProviderServer, sqlite_url: str
) -> Iterator[tuple[LLMGateway, asyncio.AbstractEventLoop]]:
    """A gateway created on, and living on, an event loop running in a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="gateway-loop", daemon=True)
    thread.start()
    settings = gateway_settings(provider_server, sqlite_url, {"review": [OPENAI]})
    create = LLMGateway.create(settings, migrate=True)
    gateway = asyncio.run_coroutine_threadsafe(create, loop).result(10)
    try:
        yield gateway, loop
    finally:
        asyncio.run_coroutine_threadsafe(gateway.aclose(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_invoke_batch_and_stream_run_on_the_gateway_loop(
    background_gateway: tuple[LLMGateway, asyncio.AbstractEventLoop],
    provider_server: FakeProviderServer,
    sqlite_url: str,
) -> None:
    gateway, loop = background_gateway
    provider_server.script(server_error(503), reply("invoked"))
    model = ResilientChatModel(gateway=gateway, route="review", loop=loop)
    chain = PROMPT | model | StrOutputParser()

    assert chain.invoke({"code": "x"}) == "invoked"
    provider_server.script(reply("b1"), reply("b2"))
    assert chain.batch([{"code": "1"}, {"code": "2"}], {"max_concurrency": 1}) == ["b1", "b2"]
    provider_server.script(stream(["s1", "s2"]))
    assert [c.content for c in model.stream("hi") if c.content] == ["s1", "s2"]
    provider_server.script(reply_json({"approved": False, "reason": "no tests"}))
    verdict = model.with_structured_output(Verdict).invoke("ok?")
    assert verdict == Verdict(approved=False, reason="no tests")

    assert provider_server.request_count == 6
    asyncio.run_coroutine_threadsafe(gateway.flush_history(), loop).result(10)
    calls, _ = asyncio.run(history(sqlite_url))
    assert [(c.agent, c.outcome) for c in calls] == [("langchain", "success")] * 5


def test_ainvoke_from_another_loop_is_handed_to_the_gateway_loop(
    background_gateway: tuple[LLMGateway, asyncio.AbstractEventLoop],
    provider_server: FakeProviderServer,
) -> None:
    gateway, loop = background_gateway
    provider_server.script(reply("from afar"), stream(["a", "b"]))
    model = ResilientChatModel(gateway=gateway, route="review", loop=loop)

    async def elsewhere() -> tuple[str, list[str]]:
        message = await model.ainvoke("hi")
        chunks = [str(c.text) async for c in model.astream("hi") if c.text]
        return str(message.text), chunks

    assert asyncio.run(elsewhere()) == ("from afar", ["a", "b"])


def test_blocking_api_without_a_loop_says_what_to_do(
    background_gateway: tuple[LLMGateway, asyncio.AbstractEventLoop],
    provider_server: FakeProviderServer,
) -> None:
    gateway, _ = background_gateway
    model = ResilientChatModel(gateway=gateway, route="review")

    with pytest.raises(RuntimeError, match="pass loop="):
        model.invoke("hi")
    with pytest.raises(RuntimeError, match="pass loop="):
        list(model.stream("hi"))
    assert provider_server.request_count == 0


async def test_blocking_api_on_the_gateway_loop_refuses_to_deadlock(
    make_gateway: MakeGateway, provider_server: FakeProviderServer
) -> None:
    gateway = await make_gateway({"review": [OPENAI]})
    model = ResilientChatModel(gateway=gateway, route="review", loop=asyncio.get_running_loop())

    with pytest.raises(RuntimeError, match="deadlock"):
        model.invoke("hi")
    assert provider_server.request_count == 0
    assert (await model.ainvoke("hi")).content == DEFAULT_REPLY
