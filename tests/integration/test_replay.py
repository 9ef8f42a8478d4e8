"""A task's answers are kept with its history and replayed, in order, to a re-run."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel

from backend.db.engine import create_engine
from backend.db.replay_store import load_replay
from backend.llm.gateway import LLMGateway
from backend.llm.replay import ReplayBook
from tests.fakes.behaviours import reply, reply_json
from tests.fakes.provider_server import FakeProviderServer
from tests.integration.gateway_helpers import OPENAI, gateway_settings, history


class Answer(BaseModel):
    value: int


@pytest.fixture
async def gateway(
    provider_server: FakeProviderServer, sqlite_url: str
) -> AsyncIterator[LLMGateway]:
    settings = gateway_settings(provider_server, sqlite_url, {"default": [OPENAI]})
    gateway = await LLMGateway.create(settings, migrate=True)
    yield gateway
    await gateway.aclose()


async def _replay_book(url: str, task_id: str) -> ReplayBook:
    engine = create_engine(url)
    try:
        return await load_replay(engine, task_id)
    finally:
        await engine.dispose()


async def test_a_rerun_replays_earlier_answers_without_requests(
    gateway: LLMGateway, provider_server: FakeProviderServer, sqlite_url: str
) -> None:
    provider_server.script(reply("first"), reply_json({"value": 2}))
    first = await gateway.complete(
        [{"role": "user", "content": "one"}], route="default", agent="a", task_id="task-1"
    )
    second = await gateway.complete(
        [{"role": "user", "content": "two"}],
        route="default",
        agent="a",
        task_id="task-1",
        schema=Answer,
    )
    assert (first.text, second.parsed) == ("first", Answer(value=2))
    await gateway.flush_history()

    book = await _replay_book(sqlite_url, "task-1")
    assert len(book) == 2
    provider_server.set_default(reply("new answer"))
    again_first = await gateway.complete(
        [{"role": "user", "content": "one"}],
        route="default",
        agent="a",
        task_id="task-1",
        replay=book,
    )
    again_second = await gateway.complete(
        [{"role": "user", "content": "two"}],
        route="default",
        agent="a",
        task_id="task-1",
        schema=Answer,
        replay=book,
    )
    third = await gateway.complete(
        [{"role": "user", "content": "three"}],
        route="default",
        agent="a",
        task_id="task-1",
        replay=book,
    )
    assert (again_first.text, again_first.replayed, again_first.attempts) == ("first", True, 0)
    assert again_second.parsed == Answer(value=2)
    assert (third.text, third.replayed) == ("new answer", False)
    assert provider_server.request_count == 3  # two originals and the one new call

    await gateway.flush_history()
    calls, _ = await history(sqlite_url)
    assert [c.replayed for c in calls] == [False, False, True, True, False]
    # A third run replays the originals and the new call, never the replayed copies.
    assert len(await _replay_book(sqlite_url, "task-1")) == 3


async def test_replay_stops_at_the_first_different_request(
    gateway: LLMGateway, provider_server: FakeProviderServer, sqlite_url: str
) -> None:
    await gateway.complete([{"role": "user", "content": "one"}], route="default", task_id="t")
    await gateway.complete([{"role": "user", "content": "two"}], route="default", task_id="t")
    await gateway.flush_history()
    book = await _replay_book(sqlite_url, "t")
    provider_server.reset()
    changed = await gateway.complete(
        [{"role": "user", "content": "other"}], route="default", task_id="t", replay=book
    )
    after = await gateway.complete(
        [{"role": "user", "content": "two"}], route="default", task_id="t", replay=book
    )
    assert not changed.replayed and not after.replayed
    assert provider_server.request_count == 2


async def test_calls_without_a_task_keep_no_answer(gateway: LLMGateway, sqlite_url: str) -> None:
    await gateway.complete([{"role": "user", "content": "one"}], route="default")
    await gateway.flush_history()
    calls, _ = await history(sqlite_url)
    assert calls[0].response_text is None and calls[0].request_hash is None
