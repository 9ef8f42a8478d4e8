"""What operators do with circuit breakers: see them all, see one with its recent events,
reset one (close it, counters zeroed) or force one open until it is reset. Every manual
transition is recorded with the operator's name as its ``actor``.

Reads go past the store's cache (an operator wants what the database says now); writes go
through :class:`~backend.core.circuit_breaker.CircuitBreaker`, so they follow the same
transition rules and compare-and-set as the gateway's own.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from backend.core.breaker_state import BreakerConfig, BreakerEvent, BreakerSnapshot, BreakerStore
from backend.core.circuit_breaker import CircuitBreaker
from backend.core.clock import SYSTEM_CLOCK, Clock
from backend.services.errors import InvalidRequestError, NotFoundError

RECENT_EVENTS = 50


@dataclass(frozen=True, slots=True)
class BreakerDetail:
    breaker: BreakerSnapshot
    events: list[BreakerEvent]


def check_key(key: str) -> str:
    """A breaker key is a target, ``provider:model`` (the model may contain ``/``)."""
    provider, sep, model = key.partition(":")
    if not sep or not provider or not model or len(key) > 255:
        raise InvalidRequestError(
            [("key", "a breaker key is a target written provider:model, e.g. sim:reviewer")]
        )
    return key


class BreakerService:
    """Operator actions on the breakers a fleet shares."""

    def __init__(
        self, store: BreakerStore, config: BreakerConfig, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock

    async def list(self) -> builtins.list[BreakerSnapshot]:
        return await self._store.list()

    async def get(self, key: str, *, events: int = RECENT_EVENTS) -> BreakerDetail:
        """One breaker and its newest events; a key never written is not found."""
        snapshot = await self._store.refresh(check_key(key))
        recent = await self._store.events(key, events)
        if snapshot.version == 0 and not recent:
            raise NotFoundError(f"no breaker {key}: no call to this target has changed it yet")
        return BreakerDetail(snapshot, recent)

    async def reset(self, key: str, actor: str) -> BreakerSnapshot:
        return await self._breaker(key).reset(actor=actor)

    async def force_open(self, key: str, actor: str) -> BreakerSnapshot:
        return await self._breaker(key).force_open(actor=actor)

    def _breaker(self, key: str) -> CircuitBreaker:
        return CircuitBreaker(
            check_key(key), store=self._store, config=self._config, clock=self._clock
        )


__all__ = ["RECENT_EVENTS", "BreakerDetail", "BreakerService", "check_key"]
