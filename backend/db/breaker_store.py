"""The breaker store that a fleet shares: snapshots in ``circuit_breakers``, history in
``breaker_events``, a short in-process cache in front, and process-local state while the
database is unreachable.

Rules, in domain words:

* **Compare-and-set is one statement.** ``UPDATE ... WHERE key = :k AND version = :v`` (or, for
  a key never written, ``INSERT ... ON CONFLICT DO NOTHING``); the writer whose statement hits a
  row wins, and its event row is written in the same transaction.
* **Own writes at once, others' within ``cache_seconds``.** ``get`` serves a cached snapshot
  younger than ``config.cache_seconds`` (a never-written key is cached as closed, version 0);
  a successful write replaces the cached entry; concurrent ``get`` calls of one stale key share
  one read. ``refresh`` always reads the database.
* **The database going away does not stop calls.** On a connection error the store logs one
  warning and goes on with its cached snapshots as process-local state (same version rules).
  It tries the database again at most every ``retry_seconds``. When the database answers again
  it logs once more and re-syncs: a key that left ``closed`` locally while offline is written
  as such (with its offline events) if the database still shows it closed; for every other
  key the database wins. Then the cache is refreshed from the database as usual.

Use one store per event loop (its engine's connections belong to that loop).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import Any, cast

from sqlalchemy import RowMapping, Table, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from backend.core.breaker_state import BreakerConfig, BreakerEvent, BreakerSnapshot, BreakerState
from backend.core.clock import SYSTEM_CLOCK, Clock
from backend.db.engine import WRITE_TRANSACTION, create_engine
from backend.db.models import BreakerEventRow, BreakerRow

logger = logging.getLogger("bulwark.breakers")

#: What "the database is unreachable" looks like (asyncio.TimeoutError is an OSError).
UNAVAILABLE: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError, DBAPIError)
#: Events kept per key while offline, to be written when the database returns.
MAX_OFFLINE_EVENTS = 100

_BREAKERS = cast(Table, BreakerRow.__table__)
_EVENTS = cast(Table, BreakerEventRow.__table__)
_SNAPSHOT_FIELDS = tuple(f.name for f in fields(BreakerSnapshot))
_EVENT_FIELDS = tuple(f.name for f in fields(BreakerEvent))


@dataclass(slots=True)
class _Entry:
    snapshot: BreakerSnapshot
    read_at: float  # clock.monotonic() when read; -inf once known to be stale


class SqlBreakerStore:
    """A :class:`~backend.core.breaker_state.BreakerStore` on a SQL database (see module)."""

    def __init__(
        self,
        bind: AsyncEngine | async_sessionmaker[AsyncSession],
        *,
        config: BreakerConfig = BreakerConfig(),  # noqa: B008  (frozen value object)
        clock: Clock = SYSTEM_CLOCK,
        retry_seconds: float = 1.0,
    ) -> None:
        engine = bind if isinstance(bind, AsyncEngine) else bind.kw.get("bind")
        if not isinstance(engine, AsyncEngine):
            raise TypeError("SqlBreakerStore needs an AsyncEngine or a sessionmaker bound to one")
        self._engine = engine
        self._writer = engine.execution_options(**WRITE_TRANSACTION)
        # SQLite has one writer at a time: queue this process's writers here rather than on
        # SQLite's busy handler, which polls with sleeps.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._config = config
        self._clock = clock
        self._retry_seconds = retry_seconds
        self._owns_engine = False
        self._entries: dict[str, _Entry] = {}
        self._own_writes: dict[str, int] = {}  # per key: local writes so far
        self._loading: dict[str, asyncio.Task[BreakerSnapshot]] = {}
        self._offline = False
        self._retry_at = 0.0
        self._reconnecting = False
        self._pending: dict[str, builtins.list[BreakerEvent]] = {}  # written while offline

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqlBreakerStore:
        """A store with an engine of its own, disposed by :meth:`aclose`."""
        store = cls(create_engine(url), **options)
        store._owns_engine = True
        return store

    @property
    def offline(self) -> bool:
        """Whether the store is running on process-local state (database unreachable)."""
        return self._offline

    async def aclose(self) -> None:
        """Stop pending reads; dispose the engine if the store created it."""
        tasks = builtins.list(self._loading.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_engine:
            await self._engine.dispose()

    # -- the BreakerStore protocol ---------------------------------------------------------

    async def get(self, key: str) -> BreakerSnapshot:
        entry = self._entries.get(key)
        if entry is not None and (
            self._clock.monotonic() - entry.read_at < self._config.cache_seconds
            or (self._offline and not self._retry_due())
        ):
            return entry.snapshot
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load(key))
            self._loading[key] = task
            task.add_done_callback(partial(self._loaded, key))
        return await asyncio.shield(task)

    async def refresh(self, key: str) -> BreakerSnapshot:
        return await self._load(key)

    async def compare_and_set(
        self,
        expected: BreakerSnapshot,
        new: BreakerSnapshot,
        event: BreakerEvent | None = None,
    ) -> BreakerSnapshot | None:
        key = expected.key
        if new.key != key or (event is not None and event.key != key):
            raise ValueError("compare_and_set needs one key for expected, new and event")
        events = [event] if event is not None else []
        if await self._online():
            try:
                stored = await self._write(expected.version, new, events)
            except UNAVAILABLE as exc:
                self._went_offline(exc)
            else:
                if stored is None:
                    self._mark_stale(key)
                else:
                    self._remember(stored, own=True)
                return stored
        return self._write_locally(expected, new, events)

    async def list(self) -> builtins.list[BreakerSnapshot]:
        if await self._online():
            try:
                async with self._engine.connect() as conn:
                    rows = await conn.execute(select(_BREAKERS).order_by(_BREAKERS.c.key))
                    return [_snapshot(row._mapping) for row in rows]
            except UNAVAILABLE as exc:
                self._went_offline(exc)
        known = (e.snapshot for e in self._entries.values() if e.snapshot.version > 0)
        return sorted(known, key=lambda s: s.key)

    async def events(self, key: str, limit: int = 50) -> builtins.list[BreakerEvent]:
        if await self._online():
            query = (
                select(_EVENTS)
                .where(_EVENTS.c.key == key)
                .order_by(_EVENTS.c.at.desc(), _EVENTS.c.id.desc())
                .limit(max(limit, 0))
            )
            try:
                async with self._engine.connect() as conn:
                    return [_event(row._mapping) for row in await conn.execute(query)]
            except UNAVAILABLE as exc:
                self._went_offline(exc)
        return self._pending.get(key, [])[::-1][: max(limit, 0)]

    # -- reading and the cache -------------------------------------------------------------

    async def _load(self, key: str) -> BreakerSnapshot:
        """The database's snapshot, cached unless a local write overtook the read."""
        if await self._online():
            writes = self._own_writes.get(key, 0)
            try:
                async with self._engine.connect() as conn:
                    snapshot = await _read(conn, key)
            except UNAVAILABLE as exc:
                self._went_offline(exc)
            else:
                if self._own_writes.get(key, 0) == writes:
                    self._remember(snapshot)
                return self._entries[key].snapshot
        return self._local(key)

    def _loaded(self, key: str, task: asyncio.Task[BreakerSnapshot]) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]

    def _local(self, key: str) -> BreakerSnapshot:
        entry = self._entries.get(key)
        return entry.snapshot if entry is not None else BreakerSnapshot(key=key)

    def _remember(self, snapshot: BreakerSnapshot, *, own: bool = False) -> None:
        self._entries[snapshot.key] = _Entry(snapshot, self._clock.monotonic())
        if own:
            self._own_writes[snapshot.key] = self._own_writes.get(snapshot.key, 0) + 1

    def _mark_stale(self, key: str) -> None:
        entry = self._entries.get(key)
        if entry is not None:
            entry.read_at = float("-inf")

    # -- writing ---------------------------------------------------------------------------

    async def _write(
        self, version: int, new: BreakerSnapshot, events: builtins.list[BreakerEvent]
    ) -> BreakerSnapshot | None:
        """Compare-and-set in one statement, plus the events, in one transaction."""
        stored = replace(new, version=version + 1)
        values = {name: getattr(stored, name) for name in _SNAPSHOT_FIELDS}
        values["state"] = stored.state.value
        try:
            async with self._write_lock or contextlib.nullcontext(), self._writer.begin() as conn:
                if version == 0:
                    result = await conn.execute(self._insert_if_absent(values))
                else:
                    result = await conn.execute(
                        update(_BREAKERS)
                        .where(_BREAKERS.c.key == new.key, _BREAKERS.c.version == version)
                        .values(values)
                    )
                if result.rowcount != 1:
                    await conn.rollback()
                    return None
                if events:
                    await conn.execute(insert(_EVENTS), [_event_values(e) for e in events])
        except IntegrityError:  # a concurrent first write, on a dialect without ON CONFLICT
            return None
        return stored

    def _insert_if_absent(self, values: dict[str, Any]) -> Any:
        dialect = self._engine.dialect.name
        if dialect == "postgresql":
            return postgresql.insert(_BREAKERS).values(values).on_conflict_do_nothing()
        if dialect == "sqlite":
            return sqlite.insert(_BREAKERS).values(values).on_conflict_do_nothing()
        return insert(_BREAKERS).values(values)

    def _write_locally(
        self, expected: BreakerSnapshot, new: BreakerSnapshot, events: builtins.list[BreakerEvent]
    ) -> BreakerSnapshot | None:
        """Compare-and-set on the process-local state, while the database is unreachable."""
        if self._local(expected.key).version != expected.version:
            return None
        stored = replace(new, version=expected.version + 1)
        self._remember(stored, own=True)
        pending = self._pending.setdefault(stored.key, [])
        pending.extend(events)
        del pending[:-MAX_OFFLINE_EVENTS]
        return stored

    # -- reachability ----------------------------------------------------------------------

    def _retry_due(self) -> bool:
        return self._clock.monotonic() >= self._retry_at

    def _went_offline(self, exc: BaseException) -> None:
        self._retry_at = self._clock.monotonic() + self._retry_seconds
        if not self._offline:
            self._offline = True
            cause = exc.orig if isinstance(exc, DBAPIError) else exc  # no SQL, no parameters
            logger.warning(
                "breaker store: database unreachable (%s: %s); breakers go on with "
                "process-local state, retrying every %.1f s",
                type(cause).__name__,
                cause,
                self._retry_seconds,
            )

    async def _online(self) -> bool:
        """Whether to use the database now; retries it (and re-syncs) when a retry is due."""
        if not self._offline:
            return True
        if self._reconnecting or not self._retry_due():
            return False
        self._reconnecting = True
        try:
            await self._resync()
        except UNAVAILABLE:
            self._retry_at = self._clock.monotonic() + self._retry_seconds
            return False
        finally:
            self._reconnecting = False
        self._offline = False
        for entry in self._entries.values():
            entry.read_at = float("-inf")
        logger.warning("breaker store: database reachable again; breaker state re-synced")
        return True

    async def _resync(self) -> None:
        """Write back the keys that left ``closed`` while offline if the database still
        shows them closed; otherwise take the database's snapshot."""
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        while self._pending:
            key, events = self._pending.popitem()
            try:
                await self._resync_key(key, events)
            except BaseException:
                self._pending[key] = events + self._pending.get(key, [])
                raise

    async def _resync_key(self, key: str, events: builtins.list[BreakerEvent]) -> None:
        local = self._local(key)
        async with self._engine.connect() as conn:
            shared = await _read(conn, key)
        if local.state is not BreakerState.CLOSED and shared.state is BreakerState.CLOSED:
            stored = await self._write(shared.version, local, events)
            if stored is not None:
                self._remember(stored, own=True)
                return
            async with self._engine.connect() as conn:
                shared = await _read(conn, key)
        self._remember(shared, own=True)


async def _read(conn: AsyncConnection, key: str) -> BreakerSnapshot:
    row = (await conn.execute(select(_BREAKERS).where(_BREAKERS.c.key == key))).first()
    return _snapshot(row._mapping) if row is not None else BreakerSnapshot(key=key)


def _snapshot(row: RowMapping) -> BreakerSnapshot:
    values = {name: row[name] for name in _SNAPSHOT_FIELDS}
    return BreakerSnapshot(**{**values, "state": BreakerState(values["state"])})


def _event(row: RowMapping) -> BreakerEvent:
    values = {name: row[name] for name in _EVENT_FIELDS}
    states = {s: BreakerState(values[s]) for s in ("from_state", "to_state")}
    return BreakerEvent(**{**values, **states})


def _event_values(event: BreakerEvent) -> dict[str, Any]:
    values = {name: getattr(event, name) for name in _EVENT_FIELDS}
    return {**values, "from_state": event.from_state.value, "to_state": event.to_state.value}


__all__ = ["MAX_OFFLINE_EVENTS", "UNAVAILABLE", "SqlBreakerStore"]
