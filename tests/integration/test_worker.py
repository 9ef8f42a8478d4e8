"""The worker against a real database, the simulator and the fake provider server: outcomes,
cancellation, deadlines, replay after a dead worker, lost leases and a clean stop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select, update

from agents.base import BaseAgent
from agents.context import AgentContext
from agents.registry import AgentRegistry
from agents.results import Review
from backend.config import Settings
from backend.db.engine import create_engine
from backend.db.migrate import upgrade_async
from backend.db.models import LLMCallRow, TaskRow
from backend.db.task_store import SqlTaskStore
from backend.llm.factory import create_gateway
from backend.tasks.model import NewTask, Task, TaskStatus
from backend.worker import WorkerHandle
from backend.worker.outcome import INTERNAL_ERROR_MESSAGE
from tests.fakes.behaviours import auth_error, hang, reply
from tests.fakes.provider_server import FakeProviderServer
from tests.integration.gateway_helpers import OPENAI, gateway_settings


class StepsInput(BaseModel):
    text: str
    steps: int = 1


class StepsOutput(BaseModel):
    answers: list[str]


class StepsAgent(BaseAgent[StepsInput, StepsOutput]):
    """One LLM call per step, in order."""

    name = "stepper"
    task_type = "steps"
    Input = StepsInput
    Output = StepsOutput

    async def run(self, input: StepsInput, ctx: AgentContext) -> StepsOutput:
        answers = []
        for step in range(input.steps):
            result = await self.ask([{"role": "user", "content": f"{input.text} #{step}"}])
            answers.append(result.text)
        return StepsOutput(answers=answers)


class CodeInput(BaseModel):
    code: str


class SimpleReviewer(BaseAgent[CodeInput, Review]):
    name = "simple-reviewer"
    task_type = "review"
    Input = CodeInput
    Output = Review
    route = "review"

    async def run(self, input: CodeInput, ctx: AgentContext) -> Review:
        prompt = f"Review this code:\n```python\n{input.code}\n```"
        return await self.ask_json([{"role": "user", "content": prompt}], schema=Review)


class BrokenAgent(BaseAgent[StepsInput, StepsOutput]):
    name = "broken"
    task_type = "broken"
    Input = StepsInput
    Output = StepsOutput

    async def run(self, input: StepsInput, ctx: AgentContext) -> StepsOutput:
        raise RuntimeError("bug at /srv/app.py with token sk-live-0123456789abcdef")


REGISTRY = AgentRegistry([StepsAgent, SimpleReviewer, BrokenAgent])
SQL_CODE = "def get(db, name):\n    return db.execute(f\"SELECT * FROM t WHERE n = '{name}'\")\n"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlTaskStore]:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    try:
        yield SqlTaskStore(engine)
    finally:
        await engine.dispose()


def sim_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "worker_poll_seconds": 0.05,
        "worker_lease_seconds": 3.0,
        "worker_grace_seconds": 5.0,
        "history_flush_seconds": 0.05,
    }
    values.update(overrides)
    return Settings(**values)


def fake_settings(server: FakeProviderServer, url: str, **overrides: Any) -> Settings:
    defaults: dict[str, Any] = {
        "worker_poll_seconds": 0.05,
        "worker_lease_seconds": 3.0,
        "worker_grace_seconds": 5.0,
    }
    routes = {"default": [OPENAI], "review": [OPENAI]}
    return gateway_settings(server, url, routes, **{**defaults, **overrides})


async def submit(store: SqlTaskStore, type: str, input: dict[str, Any], **kw: Any) -> Task:
    values: dict[str, Any] = {"deadline_seconds": 60.0, "max_attempts": 3, **kw}
    task, _ = await store.create(NewTask(owner="key-1", type=type, input=input, **values))
    return task


async def wait_for(
    store: SqlTaskStore, task_id: str, until: Callable[[Task], bool], within: float = 10.0
) -> Task:
    give_up = time.monotonic() + within
    while True:
        task = await store.get(task_id)
        assert task is not None
        if until(task):
            return task
        assert time.monotonic() < give_up, f"task never got there: {task}"
        await asyncio.sleep(0.02)


def finished(task: Task) -> bool:
    return task.status.finished


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., WorkerHandle]]:
    handles: list[WorkerHandle] = []

    def start(settings: Settings, registry: AgentRegistry = REGISTRY) -> WorkerHandle:
        handle = WorkerHandle(settings, registry=registry, worker_id=f"w{len(handles)}")
        handle.start()
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        await handle.stop(immediately=True)


async def test_a_review_task_runs_to_succeeded(
    store: SqlTaskStore, database_url: str, start: Callable[..., WorkerHandle]
) -> None:
    task = await submit(store, "review", {"code": SQL_CODE})
    began = time.monotonic()
    start(sim_settings(database_url))
    done = await wait_for(store, task.id, finished)
    assert done.status is TaskStatus.SUCCEEDED, done.error
    review = Review.model_validate(done.result)
    assert review.model.startswith("sim:") and 0 <= review.score <= 100
    assert (done.attempts, done.error) == (1, None)
    assert done.started_at is not None and done.finished_at is not None
    assert time.monotonic() - began < 5


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_built_in_reviewer_runs_as_a_task(
    store: SqlTaskStore, database_url: str, start: Callable[..., WorkerHandle]
) -> None:
    reviewer = pytest.importorskip("agents.reviewer")
    task = await submit(store, "review", {"code": SQL_CODE, "language": "python"})
    start(sim_settings(database_url), AgentRegistry([reviewer.ReviewerGPT]))
    done = await wait_for(store, task.id, finished)
    assert done.status is TaskStatus.SUCCEEDED, done.error
    Review.model_validate(done.result)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_failures_get_a_code_and_a_safe_message(
    store: SqlTaskStore,
    database_url: str,
    provider_server: FakeProviderServer,
    start: Callable[..., WorkerHandle],
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider_server.set_default(auth_error())
    unknown = await submit(store, "mystery", {})
    invalid = await submit(store, "steps", {"text": ["not", "text"]})
    broken = await submit(store, "broken", {"text": "x"})
    refused = await submit(store, "steps", {"text": "x"})
    start(fake_settings(provider_server, database_url))
    tasks = {t.id: await wait_for(store, t.id, finished) for t in (unknown, invalid, broken)}
    tasks[refused.id] = await wait_for(store, refused.id, finished)
    codes = {task_id: (t.status, t.error.code if t.error else None) for task_id, t in tasks.items()}
    assert codes == {
        unknown.id: (TaskStatus.FAILED, "unknown_task_type"),
        invalid.id: (TaskStatus.FAILED, "invalid_request"),
        broken.id: (TaskStatus.FAILED, "internal_error"),
        refused.id: (TaskStatus.FAILED, "auth_error"),
    }
    assert "'mystery'" in tasks[unknown.id].error.message  # type: ignore[union-attr]
    assert "text" in tasks[invalid.id].error.message  # type: ignore[union-attr]
    assert tasks[broken.id].error.message == INTERNAL_ERROR_MESSAGE  # type: ignore[union-attr]
    assert "Traceback" not in tasks[refused.id].error.message  # type: ignore[union-attr]
    logged = [r for r in caplog.records if r.exc_info and "sk-live" in str(r.exc_info[1])]
    assert logged, "the unexpected error's traceback goes to the log"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_cancelling_a_running_task_stops_its_llm_call(
    store: SqlTaskStore,
    database_url: str,
    provider_server: FakeProviderServer,
    start: Callable[..., WorkerHandle],
) -> None:
    provider_server.set_default(hang())
    task = await submit(store, "steps", {"text": "x"})
    start(fake_settings(provider_server, database_url, worker_lease_seconds=0.9))
    await wait_for(store, task.id, lambda t: provider_server.request_count == 1)
    began = time.monotonic()
    await store.request_cancel(task.id)
    done = await wait_for(store, task.id, finished, within=5)
    took = time.monotonic() - began
    assert done.status is TaskStatus.CANCELLED and done.error is not None
    assert done.error.code == "cancelled"
    # The call would hang for the 5 s attempt timeout and be retried; it stopped at once.
    assert took < 1.5
    await asyncio.sleep(0.2)
    assert provider_server.request_count == 1


async def test_a_task_fails_when_its_deadline_passes(
    store: SqlTaskStore, database_url: str, start: Callable[..., WorkerHandle]
) -> None:
    task = await submit(store, "steps", {"text": "x"}, deadline_seconds=0.5)
    start(sim_settings(database_url, sim_latency_ms=10_000))
    done = await wait_for(store, task.id, finished, within=5)
    assert done.status is TaskStatus.FAILED and done.error is not None
    assert done.error.code == "deadline_exceeded"
    assert done.finished_at is not None and done.deadline_at is not None
    assert (done.finished_at - done.deadline_at).total_seconds() < 0.5


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_rerun_after_a_dead_worker_replays_earlier_answers(
    store: SqlTaskStore,
    database_url: str,
    provider_server: FakeProviderServer,
    start: Callable[..., WorkerHandle],
) -> None:
    settings = fake_settings(provider_server, database_url, history_flush_seconds=0.05)
    task = await submit(store, "steps", {"text": "x", "steps": 3})
    # A worker claims the task, gets two answers, and dies waiting for the third.
    [claimed] = await store.claim("ghost", lease_seconds=0.5)
    provider_server.script(reply("first"), reply("second"), hang())
    gateway = await create_gateway(settings)
    ctx = AgentContext(gateway=gateway, registry=REGISTRY, task_id=claimed.id)
    ghost = asyncio.create_task(StepsAgent().execute(claimed.input, ctx))
    await wait_for(store, task.id, lambda t: provider_server.request_count == 3)
    ghost.cancel()
    await asyncio.wait({ghost})
    await gateway.flush_history()  # (aclose alone may drop a batch being written)
    await gateway.aclose()

    provider_server.set_default(reply("third"))
    start(settings)
    done = await wait_for(store, task.id, finished)
    assert done.status is TaskStatus.SUCCEEDED, done.error
    assert done.result == {"answers": ["first", "second", "third"]}
    assert done.attempts == 2
    assert provider_server.request_count == 4  # only the unanswered call was sent again
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = select(LLMCallRow.outcome, LLMCallRow.replayed).where(
                LLMCallRow.task_id == task.id, LLMCallRow.outcome == "success"
            )
            calls = sorted((row.replayed, row.outcome) for row in await conn.execute(query))
    finally:
        await engine.dispose()
    # The ghost's two answers, the new third one, and two replays of the ghost's answers.
    assert [replayed for replayed, _ in calls] == [False, False, False, True, True]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_worker_that_lost_its_lease_stops_without_writing(
    store: SqlTaskStore,
    database_url: str,
    provider_server: FakeProviderServer,
    start: Callable[..., WorkerHandle],
) -> None:
    provider_server.set_default(hang())
    task = await submit(store, "steps", {"text": "x"})
    handle = start(fake_settings(provider_server, database_url, worker_lease_seconds=0.9))
    await wait_for(store, task.id, lambda t: provider_server.request_count == 1)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:  # another worker took it over
            await conn.execute(
                update(TaskRow).where(TaskRow.id == task.id).values(lease_owner="usurper")
            )
    finally:
        await engine.dispose()
    assert handle.worker is not None
    for _ in range(100):
        if not handle.worker.running:
            break
        await asyncio.sleep(0.02)
    assert handle.worker.running == []
    after = await store.get(task.id)
    assert after is not None and (after.status, after.lease_owner) == (
        TaskStatus.RUNNING,
        "usurper",
    )


async def test_a_worker_claims_again_as_soon_as_a_task_ends(
    store: SqlTaskStore, database_url: str, start: Callable[..., WorkerHandle]
) -> None:
    tasks = [await submit(store, "steps", {"text": f"t{i}"}) for i in range(4)]
    settings = sim_settings(database_url, worker_concurrency=1, worker_poll_seconds=30)
    handle = start(settings)
    began = time.monotonic()
    for task in tasks:
        assert (await wait_for(store, task.id, finished)).status is TaskStatus.SUCCEEDED
    assert time.monotonic() - began < 5  # not one 30 s poll per task
    assert handle.running


async def test_stop_lets_running_tasks_finish_within_the_grace_period(
    store: SqlTaskStore, database_url: str, start: Callable[..., WorkerHandle]
) -> None:
    tasks = [await submit(store, "steps", {"text": f"t{i}"}) for i in range(2)]
    handle = start(sim_settings(database_url, sim_latency_ms=400, worker_grace_seconds=5))
    await wait_for(store, tasks[1].id, lambda t: t.status is TaskStatus.RUNNING)
    await handle.stop()
    for task in tasks:
        assert (await store.get(task.id)).status is TaskStatus.SUCCEEDED  # type: ignore[union-attr]


async def test_stop_releases_what_the_grace_period_did_not_finish(
    store: SqlTaskStore, database_url: str, start: Callable[..., WorkerHandle]
) -> None:
    tasks = [await submit(store, "steps", {"text": f"t{i}"}) for i in range(3)]
    settings = sim_settings(database_url, sim_latency_ms=10_000, worker_grace_seconds=0.3)
    handle = start(settings)
    for task in tasks:
        await wait_for(store, task.id, lambda t: t.status is TaskStatus.RUNNING)
    began = time.monotonic()
    await handle.stop()
    assert time.monotonic() - began < 2
    assert not handle.running
    for task in tasks:
        released = await store.get(task.id)
        assert released is not None and released.status is TaskStatus.QUEUED
        assert (released.attempts, released.lease_owner) == (0, None)
