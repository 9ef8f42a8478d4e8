"""The fake provider server as a separate process (so it never shares the GIL with the
contender being measured), programmed over its HTTP control endpoints."""

from __future__ import annotations

import time
from typing import Any

from bench.common import child_env
from tests.fakes.remote import ProviderServerControl, ProviderServerProcess


class FakeServer(ProviderServerProcess):
    """``python -m tests.fakes.provider_server --port 0`` in a child process, with the bench's
    environment (the audit hook that refuses non-loopback connections)."""

    def __init__(self, *, timeout: float = 30.0) -> None:
        super().__init__(0, timeout=timeout, env=child_env())


def request_times(control: ProviderServerControl) -> list[tuple[float, str]]:
    """``(received_at, behaviour kind)`` of every provider request the server received, in
    order (``received_at`` is the server's ``time.time()``)."""
    stats: dict[str, Any] = control.stats()
    out: list[tuple[float, str]] = []
    for request in stats.get("requests", []):
        if request.get("provider") is None:
            continue
        behaviour = request.get("behaviour") or {}
        out.append((float(request["received_at"]), str(behaviour.get("kind", "?"))))
    return out


def total_requests(control: ProviderServerControl) -> int:
    """Provider requests received so far (control calls are not counted)."""
    stats: dict[str, Any] = control.stats(with_requests=False)
    by_provider: dict[str, int] = stats.get("by_provider", {})
    return sum(n for name, n in by_provider.items() if name != "other")


def wall_clock() -> float:
    """The clock the fake server stamps requests with."""
    return time.time()


__all__ = ["FakeServer", "request_times", "total_requests", "wall_clock"]
