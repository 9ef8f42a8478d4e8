"""What a scenario is, on both sides of the process boundary.

A scenario runs every contender in a process of its own (``bench.case``) against fresh fake
provider servers (processes of their own too). The parent drives the contender processes in
*rounds*: in each round every contender runs one *block* in turn, so a machine whose load
changes during the run slows every contender alike (the healthy-overhead and throughput
scenarios use several rounds; fault scenarios use one). Then every contender ``finish``es and
the parent ``summarize``s the raw numbers into metrics, ratios to the raw SDK and targets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bench.common import latency_summary, ratio
from bench.contenders.base import Contender, ContenderSpec, Outcome
from tests.fakes.remote import ProviderServerControl

BASELINE = "raw_sdk"


@dataclass
class Case:
    """The child side of one contender in one scenario variant."""

    contender: Contender
    primary: ProviderServerControl
    fallback: ProviderServerControl | None
    params: dict[str, Any]
    variant: str
    scratch: dict[str, Any] = field(default_factory=dict)
    message: dict[str, Any] = field(default_factory=dict)
    """The parent's latest command (a block may carry more than its index)."""

    async def control(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Program a fake server without blocking the event loop."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def warm_up(self, calls: int, concurrency: int = 1) -> None:
        """Healthy calls (connections opened, caches filled), then a clean server record."""
        if calls > 0:
            await run_calls(self.contender, calls, concurrency)
        for server in (self.primary, self.fallback):
            if server is not None:
                await self.control(server.reset)


@dataclass(frozen=True, slots=True)
class Timed:
    """One call: when it started (``time.time()``), how long it took, what came of it."""

    started: float
    seconds: float
    outcome: Outcome

    def to_list(self) -> list[Any]:
        o = self.outcome
        return [self.started, self.seconds, o.ok, o.served_by, o.error, o.refused]


def timed_from_list(row: list[Any]) -> Timed:
    started, seconds, ok, served_by, error, refused = row
    return Timed(started, seconds, Outcome(ok, served_by, error, refused))


async def timed_call(contender: Contender, budget: float | None = None) -> Timed:
    started = time.time()
    t0 = time.perf_counter()
    outcome = await contender.call(budget)
    return Timed(started, time.perf_counter() - t0, outcome)


async def run_calls(
    contender: Contender,
    calls: int,
    concurrency: int,
    budget: float | None = None,
    on_start: Callable[[int], Awaitable[None]] | None = None,
) -> list[Timed]:
    """``calls`` calls, ``concurrency`` at a time (closed loop), in start order."""
    results: list[Timed | None] = [None] * calls
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < calls:
            index = next_index
            next_index += 1
            if on_start is not None:
                await on_start(index)
            results[index] = await timed_call(contender, budget)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, calls))))
    return [r for r in results if r is not None]


@dataclass
class Metric:
    """A column of a scenario's table."""

    key: str
    header: str
    ratio: bool = False
    """Also report the ratio to the raw SDK."""


@dataclass
class Target:
    """One target of the issue, judged per contender."""

    contender: str
    variant: str
    text: str
    value: Any
    met: bool | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "contender": self.contender,
            "variant": self.variant,
            "target": self.text,
            "value": self.value,
            "met": self.met,
            "note": self.note,
        }


class Scenario:
    """Subclasses fill in the child side (``prepare``/``block``/``finish``) and the parent
    side (``params``, ``variants``, ``metrics``, ``targets_for``)."""

    number: ClassVar[int]
    title: ClassVar[str]
    summary: ClassVar[str]
    metrics: ClassVar[list[Metric]] = []
    needs_fallback_server: ClassVar[bool] = False
    parallel_in_quick: ClassVar[bool] = False
    """Mostly waiting: in ``--quick`` runs the contenders run side by side."""
    fresh_process: ClassVar[bool] = False
    """Every case needs a process of its own, even in ``--quick`` runs (memory)."""

    # -- parent side -------------------------------------------------------------------

    def params(self, quick: bool) -> dict[str, Any]:
        return {}

    def variants(self, params: dict[str, Any]) -> list[str]:
        return ["default"]

    def rounds(self, params: dict[str, Any]) -> int:
        return 1

    def contenders(self, available: list[str], variant: str) -> list[str]:
        """The contenders that take part in ``variant`` (the raw SDK has no fallback)."""
        if self.uses_fallback(variant) and self.needs_fallback_server:
            return [name for name in available if name != BASELINE]
        return list(available)

    def spec(self, base: ContenderSpec, params: dict[str, Any], variant: str) -> ContenderSpec:
        """The contender spec for ``variant`` (``base`` has the servers' URLs)."""
        return base

    def uses_fallback(self, variant: str) -> bool:
        return self.needs_fallback_server

    def measure(
        self, contender: str, blocks: list[dict[str, Any]], final: dict[str, Any], params: Any
    ) -> dict[str, Any]:
        """The metrics of one contender from its blocks and its final report."""
        return {**merge_blocks(blocks), **final}

    def targets_for(
        self,
        contender: str,
        variant: str,
        metrics: dict[str, Any],
        ratios: dict[str, float | None],
        params: dict[str, Any],
    ) -> list[Target]:
        """The issue's targets judged for ``contender`` (``ratios``: to the raw SDK)."""
        return []

    def notes(self, params: dict[str, Any]) -> list[str]:
        return []

    # -- child side --------------------------------------------------------------------

    async def prepare(self, case: Case) -> None:
        await case.warm_up(self.warm_up_calls(case.params))

    def warm_up_calls(self, params: dict[str, Any]) -> int:
        return int(params.get("warm_up", 10))

    async def block(self, case: Case, index: int) -> dict[str, Any]:
        return {}

    async def finish(self, case: Case) -> dict[str, Any]:
        return {}


def merge_blocks(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate list values and add up numbers across blocks."""
    merged: dict[str, Any] = {}
    for block in blocks:
        for key, value in block.items():
            if isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                merged[key] = merged.get(key, 0) + value
            else:
                merged[key] = value
    return merged


def with_ratios(
    metrics: dict[str, dict[str, Any]], columns: list[Metric]
) -> dict[str, dict[str, float | None]]:
    """Each contender's ratio to the raw SDK for the metrics that ask for one."""
    baseline = metrics.get(BASELINE, {})
    return {
        name: {m.key: ratio(values.get(m.key), baseline.get(m.key)) for m in columns if m.ratio}
        for name, values in metrics.items()
    }


def latencies(rows: list[Timed]) -> dict[str, float | int]:
    return latency_summary([r.seconds for r in rows])


def at_most(value: Any, limit: float) -> bool | None:
    """``value <= limit``, or None when there is no value to judge."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return bool(value <= limit)


def at_least(value: Any, limit: float) -> bool | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return bool(value >= limit)


__all__ = [
    "BASELINE",
    "Case",
    "Metric",
    "Scenario",
    "Target",
    "Timed",
    "at_least",
    "at_most",
    "latencies",
    "merge_blocks",
    "run_calls",
    "timed_call",
    "timed_from_list",
    "with_ratios",
]
