"""The circuit breaker's data: its states, the snapshot a store keeps per key, the events of
its history, its configuration, and the :class:`BreakerStore` protocol that every storage
backend (in-memory, SQL) implements.

The rules that move a breaker between states live in :mod:`backend.core.breaker_policy`;
the object callers use lives in :mod:`backend.core.circuit_breaker`.
"""

from __future__ import annotations

import builtins
import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class BreakerState(enum.StrEnum):
    """``closed``: calls flow. ``open``: calls are refused at once. ``half_open``: a bounded
    number of probe calls test whether the target has recovered."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


#: Gauge value per state, as exported in metrics (0 closed, 1 half_open, 2 open).
STATE_GAUGE: dict[BreakerState, int] = {
    BreakerState.CLOSED: 0,
    BreakerState.HALF_OPEN: 1,
    BreakerState.OPEN: 2,
}


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """How a breaker judges its target. Defaults come from the reference design."""

    threshold: int = 5
    """Consecutive transient failures that open the breaker."""
    open_seconds: float = 60.0
    """How long an open breaker refuses calls before letting probes through."""
    half_open_max_calls: int = 1
    """Probes allowed at once while half-open, across every process sharing the store."""
    probe_lease_seconds: float = 120.0
    """A probe reservation expires after this long, so a probe whose process died cannot
    leave the breaker stuck in half-open."""
    max_open_seconds: float = 3600.0
    """Upper bound on how long a provider's Retry-After may keep a breaker open."""
    cache_seconds: float = 0.5
    """How stale a shared store's in-process cache may be (other processes' transitions
    reach this one within this time)."""

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError("threshold must be at least 1")
        if self.open_seconds <= 0:
            raise ValueError("open_seconds must be positive")
        if self.half_open_max_calls < 1:
            raise ValueError("half_open_max_calls must be at least 1")
        if not 0 <= self.cache_seconds <= 1.0:
            raise ValueError("cache_seconds must be between 0 and 1")


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """One breaker's shared state, as a store keeps it.

    ``version`` increases by one with every write; stores apply a write only when the stored
    version still equals the version the writer read (compare-and-set).
    """

    key: str
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    opened_at: datetime | None = None
    retry_at: datetime | None = None
    """When an open breaker may let probes through; ``None`` while forced open."""
    forced_open: bool = False
    """Opened by an operator: stays open until reset."""
    probes_in_flight: int = 0
    probe_expires_at: datetime | None = None
    last_error: str | None = None
    last_category: str | None = None
    updated_at: datetime | None = None
    version: int = 0


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """One transition of a breaker, kept as its history (``breaker_events``)."""

    key: str
    from_state: BreakerState
    to_state: BreakerState
    reason: str
    """Why: ``failure_threshold``, ``probe_failed``, ``probe_succeeded``, ``open_time_elapsed``,
    ``reset``, ``forced_open``, ``probe_expired``."""
    actor: str
    """``system`` for automatic transitions, the operator's key name for manual ones."""
    at: datetime
    category: str | None = None
    message: str | None = None


class BreakerStore(Protocol):
    """Where breaker snapshots live. Every implementation passes the same contract suite
    (``tests/contract/breaker_store_contract.py``)."""

    async def get(self, key: str) -> BreakerSnapshot:
        """The breaker's snapshot, possibly from an in-process cache no older than the
        configured staleness; a key never written returns a fresh closed snapshot (version 0)."""
        ...

    async def refresh(self, key: str) -> BreakerSnapshot:
        """The snapshot read from storage, bypassing any cache."""
        ...

    async def compare_and_set(
        self,
        expected: BreakerSnapshot,
        new: BreakerSnapshot,
        event: BreakerEvent | None = None,
    ) -> BreakerSnapshot | None:
        """Store ``new`` (with ``version = expected.version + 1``) only if the stored
        version still equals ``expected.version``; record ``event`` in the same transaction.
        Returns the stored snapshot, or ``None`` when another writer won."""
        ...

    async def list(self) -> list[BreakerSnapshot]:
        """Every breaker that has ever been written, ordered by key."""
        ...

    async def events(self, key: str, limit: int = 50) -> builtins.list[BreakerEvent]:
        """The breaker's most recent events, newest first."""
        ...


__all__ = [
    "STATE_GAUGE",
    "BreakerConfig",
    "BreakerEvent",
    "BreakerSnapshot",
    "BreakerState",
    "BreakerStore",
]
