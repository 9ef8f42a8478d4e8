"""The SQL breaker store's cache, its races across processes, and its life without a database.

"Another process" is another store on an engine of its own. Statements are counted with a
``before_cursor_execute`` listener; time is a fake clock, so no test waits for the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.core.breaker_state import BreakerConfig, BreakerEvent, BreakerSnapshot, BreakerState
from backend.db.breaker_store import SqlBreakerStore
from backend.db.engine import create_engine, create_sessionmaker
from backend.db.migrate import upgrade_async
from backend.testing import FakeClock

KEY = "openai:gpt-4o-mini"
OTHER = "ollama:library/llama3:8b"
UNREACHABLE_URL = "postgresql+asyncpg://postgres@127.0.0.1:1/bulwark"


class Counter:
    """Counts the statements an engine sends and the connections it tries to open."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements = 0
        self.connects = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._statement)
        event.listen(engine.sync_engine, "do_connect", self._connect)

    def _statement(self, *_: object) -> None:
        self.statements += 1

    def _connect(self, *_: object) -> None:
        self.connects += 1

    def take(self) -> int:
        """Statements since the last call."""
        seen, self.statements = self.statements, 0
        return seen


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[list[AsyncEngine]]:
    """A migrated database and two engines on it (two "processes")."""
    await upgrade_async(database_url)
    made = [create_engine(database_url), create_engine(database_url)]
    try:
        yield made
    finally:
        for engine in made:
            await engine.dispose()


def make_store(
    engine: AsyncEngine, clock: FakeClock, cache_seconds: float = 1.0
) -> SqlBreakerStore:
    return SqlBreakerStore(engine, config=BreakerConfig(cache_seconds=cache_seconds), clock=clock)


def opened(snapshot: BreakerSnapshot, clock: FakeClock) -> BreakerSnapshot:
    return replace(snapshot, state=BreakerState.OPEN, consecutive_failures=5, opened_at=clock.now())


def event_for(key: str, clock: FakeClock, reason: str = "failure_threshold") -> BreakerEvent:
    return BreakerEvent(key, BreakerState.CLOSED, BreakerState.OPEN, reason, "system", clock.now())


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bulwark.breakers" and r.levelno == logging.WARNING
    ]


# -- the cache ---------------------------------------------------------------------------------


async def test_cache_hit_costs_no_statement(engines: list[AsyncEngine], clock: FakeClock) -> None:
    store = make_store(engines[0], clock)
    counter = Counter(engines[0])

    assert await store.get(KEY) == BreakerSnapshot(KEY)  # never written: cached as closed
    assert counter.take() > 0
    clock.advance(0.9)
    assert await store.get(KEY) == BreakerSnapshot(KEY)
    assert counter.take() == 0
    clock.advance(0.1)
    await store.get(KEY)
    assert counter.take() > 0
    await store.refresh(KEY)  # refresh always reads
    assert counter.take() > 0


async def test_concurrent_gets_of_a_stale_key_share_one_read(
    engines: list[AsyncEngine], clock: FakeClock
) -> None:
    store = make_store(engines[0], clock)
    counter = Counter(engines[0])
    await store.get(KEY)
    one_read = counter.take()

    clock.advance(1)
    results = await asyncio.gather(*(store.get(KEY) for _ in range(10)))
    assert results == [BreakerSnapshot(KEY)] * 10
    assert counter.take() == one_read


async def test_own_writes_are_visible_at_once(engines: list[AsyncEngine], clock: FakeClock) -> None:
    store = make_store(engines[0], clock)
    before = await store.get(KEY)
    stored = await store.compare_and_set(before, opened(before, clock), event_for(KEY, clock))
    assert stored is not None
    counter = Counter(engines[0])
    assert await store.get(KEY) == stored
    assert counter.take() == 0


async def test_another_process_write_is_seen_within_cache_seconds(
    engines: list[AsyncEngine], clock: FakeClock
) -> None:
    here = make_store(engines[0], clock)
    # The other process is handed a sessionmaker, as an application would.
    there = SqlBreakerStore(create_sessionmaker(engines[1]), clock=clock)
    before = await here.get(KEY)
    stored = await there.compare_and_set(before, opened(before, clock))
    assert stored is not None

    clock.advance(0.5)
    assert await here.get(KEY) == before  # still cached
    clock.advance(0.5)
    assert await here.get(KEY) == stored  # cache_seconds (1 s) later: seen


async def test_a_lost_write_drops_the_cached_entry(
    engines: list[AsyncEngine], clock: FakeClock
) -> None:
    here, there = make_store(engines[0], clock), make_store(engines[1], clock)
    before = await here.get(KEY)
    winner = await there.compare_and_set(before, opened(before, clock))
    assert await here.compare_and_set(before, replace(before, consecutive_failures=1)) is None
    assert await here.get(KEY) == winner  # no need to wait out the cache


async def test_from_url_owns_and_disposes_its_engine(sqlite_url: str) -> None:
    await upgrade_async(sqlite_url)
    store = SqlBreakerStore.from_url(sqlite_url)
    before = await store.get(KEY)
    assert await store.compare_and_set(before, replace(before, consecutive_failures=1))
    assert (await store.refresh(KEY)).consecutive_failures == 1
    await store.aclose()  # disposes the engine: no ResourceWarning at the end of the test


# -- races across processes ----------------------------------------------------------------


@pytest.mark.postgres
async def test_two_engines_racing_on_postgres_exactly_one_wins(
    postgres_url: str, clock: FakeClock
) -> None:
    await upgrade_async(postgres_url)
    engines = [create_engine(postgres_url), create_engine(postgres_url)]
    try:
        stores = [make_store(engine, clock, cache_seconds=0) for engine in engines]
        expected = await stores[0].refresh(KEY)
        for round_ in range(10):  # round 0 races on the INSERT, the others on the UPDATE
            results = await asyncio.gather(
                *(
                    store.compare_and_set(
                        expected,
                        replace(expected, consecutive_failures=10 * round_ + i),
                        event_for(KEY, clock, f"r{round_}w{i}"),
                    )
                    for i, store in enumerate(stores)
                )
            )
            [winner] = [r for r in results if r is not None]
            assert winner.version == expected.version + 1
            assert await stores[1].refresh(KEY) == winner
            expected = winner
        assert len(await stores[0].events(KEY, limit=100)) == 10
    finally:
        for engine in engines:
            await engine.dispose()


# -- without a database ----------------------------------------------------------------------


async def test_unreachable_database_goes_on_locally_with_one_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(UNREACHABLE_URL)
    counter = Counter(engine)
    store = make_store(engine, clock)
    try:
        snapshot = await store.get(KEY)
        assert snapshot == BreakerSnapshot(KEY)
        assert store.offline and counter.connects == 1

        stored = await store.compare_and_set(
            snapshot, opened(snapshot, clock), event_for(KEY, clock)
        )
        assert stored == replace(opened(snapshot, clock), version=1)
        assert await store.get(KEY) == stored
        assert await store.refresh(KEY) == stored
        assert await store.compare_and_set(snapshot, BreakerSnapshot(KEY)) is None  # stale
        assert [s.key for s in await store.list()] == [KEY]
        assert [e.reason for e in await store.events(KEY)] == ["failure_threshold"]
        assert counter.connects == 1  # no retry before retry_seconds

        clock.advance(1)
        assert await store.get(KEY) == stored
        assert counter.connects == 2  # retried once, still down
        assert len(warnings_in(caplog)) == 1
        assert "unreachable" in warnings_in(caplog)[0]
    finally:
        await store.aclose()
        await engine.dispose()


class TcpProxy:
    """A loopback TCP forwarder to PostgreSQL that a test can cut and restore."""

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
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
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
async def test_database_return_resyncs_local_openings(
    postgres_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    await upgrade_async(postgres_url)
    url = make_url(postgres_url)
    assert url.host is not None and url.port is not None
    proxy = TcpProxy(url.host, url.port)
    await proxy.start()
    proxied = create_engine(url.set(port=proxy.port).render_as_string(hide_password=False))
    direct = create_engine(postgres_url)
    here, there = make_store(proxied, clock), make_store(direct, clock, cache_seconds=0)
    try:
        a, b = await here.get(KEY), await here.get(OTHER)
        await proxy.stop()  # the database goes away for `here` only

        clock.advance(1)
        local_a = await here.compare_and_set(a, opened(a, clock), event_for(KEY, clock))
        assert here.offline and local_a is not None and local_a.state is BreakerState.OPEN
        local_b = await here.compare_and_set(b, replace(b, consecutive_failures=3))
        assert local_b is not None
        shared_b = await there.compare_and_set(b, opened(b, clock), event_for(OTHER, clock))
        assert shared_b is not None

        await proxy.start()
        clock.advance(1)
        # KEY opened locally while the database showed it closed: written, with its event.
        in_db = await there.refresh(KEY)
        assert in_db.state is BreakerState.CLOSED
        assert await here.get(KEY) == replace(local_a, version=1)
        assert await there.refresh(KEY) == replace(local_a, version=1)
        assert [e.reason for e in await there.events(KEY)] == ["failure_threshold"]
        # OTHER changed in the database meanwhile: the database wins.
        assert await here.get(OTHER) == shared_b
        assert not here.offline
        messages = warnings_in(caplog)
        assert len(messages) == 2 and "reachable again" in messages[1]
    finally:
        await here.aclose()
        await proxied.dispose()
        await direct.dispose()
        await proxy.stop()
