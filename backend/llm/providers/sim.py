"""The built-in simulator provider ``sim``: offline, deterministic, with fault injection.

With no provider key configured, every route goes to ``sim`` (see ``SIMULATOR_ROUTES``), so
Bulwark runs on a fresh machine. Its answers are labelled as simulated
(``ProviderResponse.simulated`` is true, and free text starts with ``[simulated]``) and are a
pure function of the model, the messages and the seed:

* without a schema, a short plain-text answer;
* with a schema, a JSON object valid against it: a heuristic review of the code in the last
  user message when the schema is review-shaped (``summary``/``score``/``findings``), a small
  documented program when it is code-shaped (``code``), generic values otherwise; fields named
  ``model`` get ``sim:<model>`` (see :mod:`backend.llm.providers.sim_content`).

Token usage is approximated as words / 0.75. ``latency_ms`` is slept (through the injected
``clock``/``sleep``) before each answer. Faults for resilience drills come from
``BULWARK_SIM_FAULTS``; the grammar is in :mod:`backend.llm.providers.sim_faults`. A simulated
failure is a ``ProviderError`` whose ``Classification`` is the one the real provider's error
would get (category, transient flag, status code, Retry-After).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from backend.core.clock import SYSTEM_CLOCK, Clock
from backend.core.errors import ProviderError
from backend.llm.providers.sim_content import plain_answer, structured_answer
from backend.llm.providers.sim_faults import FaultInjector, FaultPlan, FaultRule
from backend.llm.types import ProviderRequest, ProviderResponse, Usage

if TYPE_CHECKING:
    from backend.config import Settings

Sleep = Callable[[float], Awaitable[None]]

#: How many pieces ``stream()`` cuts an answer into (at most).
STREAM_CHUNKS = 4


class SimProvider:
    """A :class:`~backend.llm.providers.base.Provider` that never leaves the process.

    The same request (model, messages, schema) always gets the same answer for a given
    ``seed``; faults follow ``faults`` in arrival order, repeatably for a given ``seed``.
    ``sleep`` (default: ``clock.sleep``) is awaited for the latency and for hangs that carry a
    request timeout, so tests never wait.
    """

    def __init__(
        self,
        name: str = "sim",
        *,
        latency_ms: float = 0.0,
        faults: FaultPlan | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        seed: int = 0,
    ) -> None:
        if latency_ms < 0 or not math.isfinite(latency_ms):
            raise ValueError(f"latency_ms must be a finite number >= 0, got {latency_ms!r}")
        self.name = name
        self.latency_ms = latency_ms
        self.faults = faults or FaultPlan()
        self.seed = seed
        self._sleep: Sleep = sleep or (clock or SYSTEM_CLOCK).sleep
        self._injector = FaultInjector(self.faults, provider=name, seed=seed)
        self.requests = 0
        """Requests received (including failed ones)."""

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock | None = None) -> SimProvider:
        """``sim`` with ``BULWARK_SIM_LATENCY_MS`` and ``BULWARK_SIM_FAULTS`` applied."""
        return cls(
            latency_ms=settings.sim_latency_ms,
            faults=FaultPlan.parse(settings.sim_faults),
            clock=clock,
        )

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        await self._before(request)
        return self.answer(request)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[str]:
        await self._before(request)
        text = self.answer(request).text
        size = max(1, -(-len(text) // STREAM_CHUNKS))
        for start in range(0, len(text), size):
            yield text[start : start + size]

    async def aclose(self) -> None:
        """Nothing to release."""

    def answer(self, request: ProviderRequest) -> ProviderResponse:
        """The answer to ``request``, without latency or faults (pure)."""
        digest = _digest(request, self.seed)
        rng = random.Random(digest)
        target = f"{self.name}:{request.model}"
        if request.schema is not None:
            value = structured_answer(request, request.schema.json_schema, target=target, rng=rng)
            text = json.dumps(value, ensure_ascii=False)
        else:
            text = plain_answer(request, target=target, rng=rng)
        finish = "stop"
        if request.max_tokens is not None and request.schema is None:
            text, cut = _truncate_words(text, request.max_tokens)
            finish = "length" if cut else finish
        prompt = " ".join(m.content for m in request.messages)
        return ProviderResponse(
            text=text,
            usage=Usage(input_tokens=_tokens(prompt), output_tokens=_tokens(text)),
            request_id=f"sim-{digest:016x}",
            finish_reason=finish,
            simulated=True,
        )

    async def _before(self, request: ProviderRequest) -> None:
        """Counts the request, waits the latency, and raises the fault it gets, if any."""
        self.requests += 1
        fault = self._injector.next_fault(request.model)
        if self.latency_ms:
            await self._sleep(self.latency_ms / 1000)
        if fault is not None:
            await self._fail(fault, request)

    async def _fail(self, fault: FaultRule, request: ProviderRequest) -> None:
        if fault.hang:
            if request.timeout is None:
                await asyncio.get_running_loop().create_future()  # until cancelled
            await self._sleep(request.timeout or 0.0)
        error = fault.error(self.name, request.model)
        raise ProviderError(fault.classification(self.name, request.model), cause=error) from error


def from_settings(settings: Settings, *, clock: Clock | None = None) -> SimProvider:
    """The ``sim`` provider configured by ``settings`` (see :meth:`SimProvider.from_settings`)."""
    return SimProvider.from_settings(settings, clock=clock)


def _digest(request: ProviderRequest, seed: int) -> int:
    hasher = hashlib.sha256(f"{seed}\0{request.model}\0".encode())
    for message in request.messages:
        hasher.update(f"{message.role}\0{message.content}\0".encode())
    if request.schema is not None:
        hasher.update(json.dumps(request.schema.json_schema, sort_keys=True).encode())
    return int.from_bytes(hasher.digest()[:8], "big")


def _tokens(text: str) -> int:
    """Approximate tokens: words / 0.75, rounded up."""
    return math.ceil(len(text.split()) / 0.75)


def _truncate_words(text: str, max_tokens: int) -> tuple[str, bool]:
    """At most ``max_tokens`` approximate tokens of ``text`` (the label always survives), and
    whether it was cut."""
    words = text.split(" ")
    keep = max(1, math.floor(max_tokens * 0.75))
    return (text, False) if len(words) <= keep else (" ".join(words[:keep]), True)


__all__ = ["STREAM_CHUNKS", "SimProvider", "from_settings"]
