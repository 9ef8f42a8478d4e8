"""10. Memory: resident memory per in-flight call with many calls in flight at once
(provider latency 2 s).

Every call starts at once. The contender's process samples its own ``VmRSS`` (from
/proc/self/status) before (idle, after a warm-up and a garbage collection) and while the calls
run; (peak - idle) / calls is the memory per in-flight call.

Every contender's HTTP pool is widened to the number of calls, so the calls really are in
flight (the SDK's default pool holds 1,000 connections, LiteLLM's aiohttp pool 1,000 and 500
per host), and the SDK-based contenders use the SDK's aiohttp client
(``openai.DefaultAioHttpClient``): the default httpx2 pool does O(connections) work per request
event, so 10,000 connections would take it tens of minutes (LiteLLM is on aiohttp already).
The attempt timeout is raised to 300 s for everyone: with 10,000 calls the client process is
busy for tens of seconds before it reads the first answer, and this scenario measures memory,
not timeouts. The fake server (its own process, open-file limit raised) holds every
connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
from typing import Any

from bench.common import rss_bytes
from bench.contenders.base import ContenderSpec
from bench.scenarios.base import Case, Metric, Scenario, Target, timed_call
from bench.servers import request_times

MIB = 1024 * 1024


def peak_concurrency(stamps: list[float], latency: float) -> int:
    """The most requests the server held at once, each held ``latency`` seconds."""
    ordered = sorted(stamps)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - latency:
            start += 1
        best = max(best, end - start + 1)
    return best


class Memory(Scenario):
    number = 10
    title = "Memory per in-flight call"
    summary = "many concurrent calls, 2 s provider latency: RSS (peak - idle) per in-flight call"
    parallel_in_quick = True
    fresh_process = True
    metrics = [  # noqa: RUF012
        Metric("calls", "calls"),
        Metric("idle_rss_mib", "idle RSS MiB", ratio=True),
        Metric("peak_rss_mib", "peak RSS MiB", ratio=True),
        Metric("kib_per_call", "KiB per in-flight call", ratio=True),
        Metric("peak_at_provider", "peak in flight at provider"),
        Metric("elapsed_s", "all done (s)", ratio=True),
        Metric("failures", "failures"),
    ]

    def params(self, quick: bool) -> dict[str, Any]:
        return {
            "calls": 500 if quick else 10_000,
            "latency_ms": 2000,
            "transport": "aiohttp",
            "attempt_timeout": 300.0,
            "warm_up": 20,
        }

    def spec(self, base: ContenderSpec, params: dict[str, Any], variant: str) -> ContenderSpec:
        spec = dataclasses.replace(
            base, max_connections=int(params["calls"]), transport=str(params["transport"])
        )
        return spec.with_settings(attempt_timeout=float(params["attempt_timeout"]))

    async def prepare(self, case: Case) -> None:
        await case.warm_up(int(case.params["warm_up"]))
        await case.control(case.primary.set_latency, float(case.params["latency_ms"]))

    async def block(self, case: Case, index: int) -> dict[str, Any]:
        calls = int(case.params["calls"])
        gc.collect()
        await asyncio.sleep(0.5)
        idle = rss_bytes()
        peak = idle
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_bytes())
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        started = time.perf_counter()
        rows = await asyncio.gather(*(timed_call(case.contender) for _ in range(calls)))
        elapsed = time.perf_counter() - started
        done.set()
        await sampler
        peak = max(peak, rss_bytes())
        stamps = [t for t, _ in await case.control(request_times, case.primary)]
        return {
            "calls": calls,
            "idle_rss": idle,
            "peak_rss": peak,
            "elapsed_s": round(elapsed, 2),
            "failures": sum(1 for r in rows if not r.outcome.ok),
            "errors": sorted({r.outcome.error for r in rows if r.outcome.error}),
            "requests": len(stamps),
            "peak_at_provider": peak_concurrency(stamps, float(case.params["latency_ms"]) / 1000),
        }

    def measure(
        self, contender: str, blocks: list[dict[str, Any]], final: dict[str, Any], params: Any
    ) -> dict[str, Any]:
        b = blocks[0]
        delta = int(b["peak_rss"]) - int(b["idle_rss"])
        return {
            "calls": b["calls"],
            "idle_rss_mib": round(int(b["idle_rss"]) / MIB, 1),
            "peak_rss_mib": round(int(b["peak_rss"]) / MIB, 1),
            "kib_per_call": round(delta / 1024 / int(b["calls"]), 1),
            "peak_at_provider": b["peak_at_provider"],
            "elapsed_s": b["elapsed_s"],
            "failures": b["failures"],
            "errors": b["errors"],
            "requests": b["requests"],
        }

    def targets_for(
        self,
        contender: str,
        variant: str,
        metrics: dict[str, Any],
        ratios: dict[str, float | None],
        params: dict[str, Any],
    ) -> list[Target]:
        return [
            Target(
                contender,
                variant,
                "every call completes",
                metrics["failures"],
                metrics["failures"] == 0,
                ", ".join(metrics["errors"]),
            )
        ]

    def notes(self, params: dict[str, Any]) -> list[str]:
        return [
            "The issue sets no memory target; the ratio column compares with the raw SDK.",
            "HTTP client: the SDK's aiohttp client with a pool as wide as the calls, attempt "
            "timeout 300 s, for every contender (see the module docstring of "
            "bench/scenarios/s10_memory.py).",
            "'peak in flight at provider': the most requests the fake server held at once "
            "(each held for the provider latency), i.e. how many calls were really on the wire.",
        ]


SCENARIO = Memory()
