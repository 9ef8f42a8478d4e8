"""An in-process :class:`~backend.core.breaker_state.BreakerStore`: the default store of a
:class:`~backend.core.circuit_breaker.CircuitBreaker`, the fallback when the database is
unreachable, and the reference implementation of the store contract in tests."""

from __future__ import annotations

import builtins
import threading
from collections import deque
from dataclasses import replace

from backend.core.breaker_state import BreakerEvent, BreakerSnapshot


class MemoryBreakerStore:
    """Snapshots and events in dictionaries, shared by whoever holds this object.

    A ``threading.Lock`` (not an ``asyncio.Lock``) guards every read and write, because the
    synchronous API drives the async core from other threads and event loops; nothing awaits
    while holding it. Each key keeps its newest ``max_events`` events.
    """

    def __init__(self, *, max_events: int = 1000) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self._max_events = max_events
        self._lock = threading.Lock()
        self._snapshots: dict[str, BreakerSnapshot] = {}
        self._events: dict[str, deque[BreakerEvent]] = {}

    async def get(self, key: str) -> BreakerSnapshot:
        """The stored snapshot (no cache here, so the same as :meth:`refresh`)."""
        with self._lock:
            return self._snapshots.get(key) or BreakerSnapshot(key=key)

    async def refresh(self, key: str) -> BreakerSnapshot:
        return await self.get(key)

    async def compare_and_set(
        self,
        expected: BreakerSnapshot,
        new: BreakerSnapshot,
        event: BreakerEvent | None = None,
    ) -> BreakerSnapshot | None:
        """Store ``new`` as version ``expected.version + 1`` and append ``event``, both or
        neither, only while the stored version is still ``expected.version``."""
        if new.key != expected.key or (event is not None and event.key != expected.key):
            raise ValueError("compare_and_set needs one key for expected, new and event")
        key = expected.key
        with self._lock:
            current = self._snapshots.get(key)
            if (current.version if current else 0) != expected.version:
                return None
            stored = replace(new, version=expected.version + 1)
            self._snapshots[key] = stored
            if event is not None:
                history = self._events.get(key)
                if history is None:
                    history = self._events[key] = deque(maxlen=self._max_events)
                history.append(event)
            return stored

    async def list(self) -> builtins.list[BreakerSnapshot]:
        """Every written breaker, ordered by key."""
        with self._lock:
            return [self._snapshots[key] for key in sorted(self._snapshots)]

    async def events(self, key: str, limit: int = 50) -> builtins.list[BreakerEvent]:
        """The newest ``limit`` events of ``key``, newest first."""
        with self._lock:
            history = builtins.list(self._events.get(key, ()))
        history.reverse()
        return history[: max(limit, 0)]


__all__ = ["MemoryBreakerStore"]
