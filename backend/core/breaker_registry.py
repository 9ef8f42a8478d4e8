"""One :class:`CircuitBreaker` per target key, all on one store and one configuration."""

from __future__ import annotations

from collections.abc import Callable

from backend.core.breaker_state import BreakerConfig, BreakerEvent, BreakerStore
from backend.core.circuit_breaker import CircuitBreaker
from backend.core.clock import SYSTEM_CLOCK, Clock
from backend.core.memory_breaker_store import MemoryBreakerStore


class BreakerRegistry:
    """Hands out the breaker of a target, creating it on first use."""

    def __init__(
        self,
        store: BreakerStore | None = None,
        config: BreakerConfig | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store: BreakerStore = store if store is not None else MemoryBreakerStore()
        self.config = config or BreakerConfig()
        self.clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._transition_listeners: list[Callable[[BreakerEvent], None]] = []

    def get(self, key: str) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = CircuitBreaker(key, store=self.store, config=self.config, clock=self.clock)
            for listener in self._transition_listeners:
                breaker.on_transition.append(listener)
            self._breakers[key] = breaker
        return breaker

    def on_transition(self, listener: Callable[[BreakerEvent], None]) -> None:
        """Hear every transition of every breaker, present and future."""
        self._transition_listeners.append(listener)
        for breaker in self._breakers.values():
            breaker.on_transition.append(listener)


__all__ = ["BreakerRegistry"]
