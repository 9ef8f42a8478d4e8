"""The call history writer (:class:`CallRecorder`) on a real database: batched writes, the
background writer, life while the database is unreachable, shutdown, and redaction.

Calls are built with :class:`CallLog` and a fake clock, as the gateway builds them; only the
background writer's own timer runs in real time (it is the point of those tests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.breaker_state import BreakerState
from backend.core.errors import Classification, ErrorCategory
from backend.core.recovery_events import AttemptEvent, AttemptOutcome
from backend.core.redact import REDACTED
from backend.core.retry_policy import Decision, GiveUpReason
from backend.db.call_recorder import CallRecorder
from backend.db.engine import create_engine
from backend.db.migrate import upgrade_async
from backend.db.models import LLMAttemptRow, LLMCallRow
from backend.llm.history import AttemptRecord, CallLog, CallRecord
from backend.testing import FakeClock

UNREACHABLE_URL = "postgresql+asyncpg://postgres@127.0.0.1:1/bulwark"
TARGET = "openai:gpt-4o-mini"
SECRET = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    await upgrade_async(database_url)
    made = create_engine(database_url)
    try:
        yield made
    finally:
        await made.dispose()


@contextlib.asynccontextmanager
async def recorder_on(engine: AsyncEngine, **options: Any) -> AsyncIterator[CallRecorder]:
    recorder = CallRecorder(engine, **options)
    try:
        yield recorder
    finally:
        await recorder.aclose()


def event(
    clock: FakeClock,
    attempt: int,
    outcome: AttemptOutcome,
    decision: Decision,
    classification: Classification | None = None,
    *,
    wait: float = 0.0,
    reason: GiveUpReason | None = None,
) -> AttemptEvent:
    return AttemptEvent(
        context="reviewer/review",
        attempt=attempt,
        breaker_key=TARGET,
        breaker_state=BreakerState.CLOSED,
        started_at=clock.now(),
        duration=0.25,
        outcome=outcome,
        classification=classification,
        decision=decision,
        wait=wait,
        give_up_reason=reason,
    )


RATE_LIMITED = Classification(
    ErrorCategory.RATE_LIMIT,
    True,
    retry_after_seconds=1.5,
    status_code=429,
    request_id="req_123",
    message="Rate limit reached",
)


def retried_call(
    clock: FakeClock, task_id: str | None = None
) -> tuple[CallRecord, list[AttemptRecord]]:
    """A call rate limited once, then answered: two attempts."""
    log = CallLog(
        context="reviewer/review", clock=clock, agent="reviewer", task_id=task_id, route="review"
    )
    log.add(TARGET, event(clock, 1, AttemptOutcome.FAILURE, Decision.RETRY, RATE_LIMITED, wait=1.5))
    clock.advance(1.75)
    log.add(TARGET, event(clock, 2, AttemptOutcome.SUCCESS, Decision.SUCCEED))
    clock.advance(0.25)
    record = log.finish(None, outcome="success", target=TARGET, input_tokens=12, output_tokens=34)
    return record, list(log.attempts)


def plain_call(clock: FakeClock, number: int) -> tuple[CallRecord, list[AttemptRecord]]:
    log = CallLog(context=f"test/{number}", clock=clock)
    log.add(TARGET, event(clock, 1, AttemptOutcome.SUCCESS, Decision.SUCCEED))
    return log.finish(None, outcome="success", target=TARGET), list(log.attempts)


async def read_history(engine: AsyncEngine) -> tuple[list[LLMCallRow], list[LLMAttemptRow]]:
    async with engine.connect() as conn:
        calls = (await conn.execute(select(LLMCallRow).order_by(LLMCallRow.started_at))).all()
        attempts = (
            await conn.execute(
                select(LLMAttemptRow).order_by(LLMAttemptRow.call_id, LLMAttemptRow.attempt)
            )
        ).all()
    return list(calls), list(attempts)  # type: ignore[arg-type]


async def count_calls(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(LLMCallRow))).scalar_one())


async def has_calls(engine: AsyncEngine, count: int) -> bool:
    return await count_calls(engine) >= count


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Wait until ``check()`` holds: the background writer runs on its own real-time timer."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + within
    while not await check():
        if loop.time() > give_up_at:
            raise AssertionError(f"not true within {within} s")
        await asyncio.sleep(0.02)


def history_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bulwark.history" and r.levelno == logging.WARNING
    ]


# -- writing -----------------------------------------------------------------------------------


async def test_flush_writes_calls_with_their_attempts(
    engine: AsyncEngine, clock: FakeClock
) -> None:
    async with recorder_on(engine) as recorder:
        call, attempts = retried_call(clock, task_id="task-1")
        recorder.submit(call, attempts)
        assert recorder.pending == 1
        assert await count_calls(engine) == 0  # submit does no I/O

        assert await recorder.flush() == 1
        assert recorder.pending == 0

    [row], [first, second] = await read_history(engine)
    assert (row.id, row.context, row.agent, row.task_id, row.route) == (
        call.id,
        "reviewer/review",
        "reviewer",
        "task-1",
        "review",
    )
    assert (row.target, row.outcome, row.attempts, row.category) == (TARGET, "success", 2, None)
    assert (row.input_tokens, row.output_tokens, row.duration_ms) == (12, 34, 2000.0)
    assert (row.started_at, row.finished_at) == (call.started_at, call.finished_at)
    assert row.started_at.tzinfo is not None  # aware UTC on every database

    assert (first.call_id, first.attempt, first.target, first.outcome) == (
        call.id,
        1,
        TARGET,
        "failure",
    )
    assert (first.category, first.http_status, first.request_id) == ("rate_limit", 429, "req_123")
    assert (first.retry_after_ms, first.wait_ms, first.decision) == (1500.0, 1500.0, "retry")
    assert (first.breaker_state, first.duration_ms, first.error) == (
        "closed",
        250.0,
        "Rate limit reached",
    )
    assert (second.attempt, second.outcome, second.decision) == (2, "success", "succeed")
    assert (second.category, second.http_status, second.wait_ms, second.error) == (
        None,
        None,
        None,
        None,
    )


async def test_many_calls_are_written_in_batches(engine: AsyncEngine, clock: FakeClock) -> None:
    async with recorder_on(engine, batch_size=100) as recorder:
        for number in range(1234):
            recorder.submit(*plain_call(clock, number))
        assert await recorder.flush() == 1234
        assert await recorder.flush() == 0
    assert await count_calls(engine) == 1234
    calls, attempts = await read_history(engine)
    assert len(attempts) == 1234
    assert {a.call_id for a in attempts} == {c.id for c in calls}


async def test_the_background_writer_flushes_by_itself(
    engine: AsyncEngine, clock: FakeClock
) -> None:
    async with recorder_on(engine, flush_seconds=0.05) as recorder:
        recorder.start()
        recorder.submit(*plain_call(clock, 1))
        await eventually(lambda: has_calls(engine, 1))
        assert recorder.pending == 0


async def test_a_full_batch_wakes_the_writer_before_flush_seconds(
    engine: AsyncEngine, clock: FakeClock
) -> None:
    async with recorder_on(engine, flush_seconds=60, batch_size=50) as recorder:
        recorder.start()
        for number in range(50):
            recorder.submit(*plain_call(clock, number))
        await eventually(lambda: has_calls(engine, 50))  # within 5 s: far less than 60 s


async def test_aclose_writes_what_is_queued(engine: AsyncEngine, clock: FakeClock) -> None:
    recorder = CallRecorder(engine, flush_seconds=60)
    recorder.start()
    for number in range(3):
        recorder.submit(*plain_call(clock, number))
    await recorder.aclose()
    assert recorder.pending == 0
    assert await count_calls(engine) == 3


# -- secrets -----------------------------------------------------------------------------------


async def test_no_secret_reaches_the_database(engine: AsyncEngine, clock: FakeClock) -> None:
    refused = Classification(
        ErrorCategory.AUTH_ERROR,
        False,
        status_code=401,
        message=f"Incorrect API key provided: {SECRET}",
    )
    log = CallLog(context="reviewer/review", clock=clock, agent="reviewer", route="review")
    log.add(
        TARGET,
        event(
            clock,
            1,
            AttemptOutcome.FAILURE,
            Decision.GIVE_UP,
            refused,
            reason=GiveUpReason.PERMANENT,
        ),
    )
    async with recorder_on(engine) as recorder:
        log.finish(
            recorder,
            outcome="failure",
            target=TARGET,
            category="auth_error",
            error=f"call failed: Authorization: Bearer {SECRET} was refused",
        )
        assert await recorder.flush() == 1

    [call], [attempt] = await read_history(engine)
    assert call.error is not None and attempt.error is not None
    for text in (call.error, attempt.error):
        assert SECRET not in text
        assert "abcdefghijklmnop" not in text
        assert REDACTED in text
    assert attempt.error == f"Incorrect API key provided: {REDACTED}"


# -- an unreachable database -------------------------------------------------------------------


@pytest.fixture
async def unreachable() -> AsyncIterator[AsyncEngine]:
    made = create_engine(UNREACHABLE_URL)
    try:
        yield made
    finally:
        await made.dispose()


async def test_unreachable_database_keeps_calls_buffered_with_one_warning(
    unreachable: AsyncEngine, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = CallRecorder(unreachable, buffer_limit=100)
    submitted = [plain_call(clock, n) for n in range(3)]
    for call in submitted:
        recorder.submit(*call)

    with pytest.raises(OSError):
        await recorder.flush()
    assert await recorder.flush(raise_errors=False) == 0
    recorder.submit(*plain_call(clock, 3))
    assert await recorder.flush(raise_errors=False) == 0

    assert recorder.pending == 4 and recorder.dropped == 0  # nothing lost
    warnings = history_warnings(caplog)
    assert len(warnings) == 1
    assert "unreachable" in warnings[0]

    caplog.clear()
    await recorder.aclose()  # best effort: reports what it could not write, does not raise
    assert history_warnings(caplog) == [
        "history database unreachable at shutdown: 4 calls not written"
    ]


async def test_the_buffer_is_bounded_and_drops_the_oldest(
    engine: AsyncEngine, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Queueing never touches the database, so an outage fills the buffer exactly like this.
    async with recorder_on(engine, buffer_limit=3) as recorder:
        submitted = [plain_call(clock, n) for n in range(5)]
        for call in submitted:
            recorder.submit(*call)
        assert (recorder.pending, recorder.dropped) == (3, 2)
        assert sum("buffer full" in m for m in history_warnings(caplog)) == 2
        assert await recorder.flush() == 3
    calls, _ = await read_history(engine)
    assert {c.id for c in calls} == {call.id for call, _ in submitted[2:]}


class Forwarder:
    """A loopback TCP forwarder to the database server, which a test can cut and restore."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._writers.clear()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._forward(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.append(up_writer)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


@pytest.mark.postgres
async def test_buffered_calls_are_written_when_the_database_returns(
    postgres_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    await upgrade_async(postgres_url)
    url = make_url(postgres_url)
    assert url.host is not None and url.port is not None
    forwarder = Forwarder(url.host, url.port)
    await forwarder.start()
    through = create_engine(url.set(port=forwarder.port).render_as_string(hide_password=False))
    direct = create_engine(postgres_url)
    recorder = CallRecorder(through, flush_seconds=0.05)
    try:
        before, before_attempts = plain_call(clock, 0)
        recorder.submit(before, before_attempts)
        assert await recorder.flush() == 1

        await forwarder.stop()  # the database goes away
        during = [plain_call(clock, n) for n in range(1, 6)]
        for call in during:
            recorder.submit(*call)
            assert await recorder.flush(raise_errors=False) == 0
        assert recorder.pending == 5
        assert sum("unreachable" in m for m in history_warnings(caplog)) == 1

        await forwarder.start()  # it is back: the background writer catches up by itself
        recorder.start()
        # (``pending`` drops as a batch is taken, before it is written: watch the table.)
        await eventually(lambda: has_calls(direct, 6), within=10)
        assert recorder.pending == 0
        calls, attempts = await read_history(direct)
        assert {c.id for c in calls} == {before.id, *(c.id for c, _ in during)}
        assert len(attempts) == 6 and recorder.dropped == 0
        warnings = history_warnings(caplog)
        assert sum("unreachable" in m for m in warnings) == 1
        assert "reachable again" in warnings[-1]
    finally:
        await recorder.aclose()
        await through.dispose()
        await direct.dispose()
        await forwarder.stop()


async def test_an_oversized_value_does_not_cost_the_call_its_history(
    engine: AsyncEngine, clock: FakeClock
) -> None:
    long_log = CallLog(context="c" * 300, clock=clock, agent="a" * 300, route="review")
    long_call = long_log.finish(None, outcome="success", target="openai:" + "m" * 400)
    async with recorder_on(engine) as recorder:
        recorder.submit(long_call, [])
        recorder.submit(*plain_call(clock, 1))
        assert await recorder.flush() == 2
    calls, _ = await read_history(engine)
    stored = {call.id: call for call in calls}[long_call.id]
    assert len(stored.context) == 100 and stored.context.endswith("…")
    assert len(stored.agent or "") == 100
    assert len(stored.target or "") == 255
    assert len(calls) == 2
