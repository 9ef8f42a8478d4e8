"""Time as a dependency: core code asks a :class:`Clock` instead of calling ``time`` directly,
so tests advance a fake clock (``backend.testing.FakeClock``) instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """``monotonic()`` measures durations and deadlines; ``now()`` stamps what is shared
    between processes (breaker open times, history rows)."""

    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


SYSTEM_CLOCK: Clock = SystemClock()

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]
