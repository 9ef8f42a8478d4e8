"""The fake provider's script (queues and defaults) and its record of received requests.

Thread-safe: tests and other threads program it while the server's event loop consumes it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from tests.fakes.behaviours import Behaviour, flatten, reply
from tests.fakes.wire import Provider

QueueName = Literal["shared", "openai", "anthropic"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request that reached a provider endpoint (control requests are not recorded)."""

    provider: Provider | None  # None: a path that is neither provider's endpoint
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None when the body was not JSON
    raw: bytes
    behaviour: Behaviour | None  # what the server did with it (None: not a provider call)
    received_at: float  # time.time()

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body,
            "behaviour": self.behaviour.to_dict() if self.behaviour else None,
            "received_at": self.received_at,
        }


class ScriptState:
    """Queues of scripted behaviours, defaults, latency, and the received requests.

    A request to provider P takes the first behaviour of P's queue, else of the shared queue,
    else P's default, else the global default (``reply()`` unless changed).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queues: dict[QueueName, deque[Behaviour]] = {
            "shared": deque(),
            "openai": deque(),
            "anthropic": deque(),
        }
        self._defaults: dict[QueueName, Behaviour | None] = {}
        self._latency_ms = 0.0
        self._requests: list[RecordedRequest] = []
        self.reset()

    # --- programming -------------------------------------------------------------------------

    def script(
        self, items: Iterable[Behaviour | Iterable[Behaviour]], provider: Provider | None
    ) -> int:
        behaviours = flatten(items)
        with self._cond:
            self._queues[provider or "shared"].extend(behaviours)
        return len(behaviours)

    def set_default(self, behaviour: Behaviour | None, provider: Provider | None) -> None:
        """``provider=None`` sets the global default; ``behaviour=None`` clears a provider's."""
        with self._cond:
            if provider is None:
                self._defaults["shared"] = behaviour or reply()
            else:
                self._defaults[provider] = behaviour

    def set_latency(self, ms: float) -> None:
        with self._cond:
            self._latency_ms = float(ms)

    @property
    def latency_ms(self) -> float:
        return self._latency_ms

    def reset(self) -> None:
        """Forget the script, defaults, latency and received requests."""
        with self._cond:
            for queue in self._queues.values():
                queue.clear()
            self._defaults = {"shared": reply(), "openai": None, "anthropic": None}
            self._latency_ms = 0.0
            self._requests.clear()

    def next_behaviour(self, provider: Provider) -> Behaviour:
        with self._cond:
            for name in (provider, "shared"):
                queue = self._queues[name]
                if queue:
                    return queue.popleft()
            default = self._defaults[provider] or self._defaults["shared"]
            assert default is not None
            return default

    def pending(self) -> dict[str, int]:
        """Scripted behaviours not consumed yet, per queue."""
        with self._cond:
            return {name: len(queue) for name, queue in self._queues.items()}

    # --- recording ---------------------------------------------------------------------------

    def record(
        self,
        provider: Provider | None,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any,
        raw: bytes,
        behaviour: Behaviour | None,
    ) -> None:
        request = RecordedRequest(
            provider, method, path, headers, body, raw, behaviour, time.time()
        )
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()

    def requests(self, provider: Provider | None = None) -> list[RecordedRequest]:
        with self._cond:
            return [r for r in self._requests if provider is None or r.provider == provider]

    def count(self, path: str | None = None, provider: Provider | None = None) -> int:
        with self._cond:
            return sum(
                1
                for r in self._requests
                if (path is None or r.path == path) and (provider is None or r.provider == provider)
            )

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        """Block until at least ``n`` requests were received; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._requests) >= n, timeout)

    def stats(self, *, with_requests: bool = True) -> dict[str, Any]:
        with self._cond:
            requests = list(self._requests)
            pending = {name: len(queue) for name, queue in self._queues.items()}
        out: dict[str, Any] = {
            "total": len(requests),
            "by_path": dict(Counter(r.path for r in requests)),
            "by_provider": dict(Counter(r.provider or "other" for r in requests)),
            "pending": pending,
            "latency_ms": self._latency_ms,
        }
        if with_requests:
            out["requests"] = [r.to_dict() for r in requests]
        return out
