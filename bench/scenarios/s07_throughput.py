"""7. Throughput: calls with 200 in flight (closed loop), provider latency 50 ms.

Split into rounds like scenario 1, so machine-load changes reach every contender alike.
Throughput = calls / the time spent in the rounds.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import latency_summary
from bench.scenarios.base import BASELINE, Case, Metric, Scenario, Target, at_least, run_calls
from bench.servers import total_requests

THROUGHPUT_TARGET = 0.9


class Throughput(Scenario):
    number = 7
    title = "Throughput"
    summary = "calls with 200 in flight, 50 ms provider latency: calls/s and latency"
    metrics = [  # noqa: RUF012
        Metric("n", "calls"),
        Metric("calls_per_s", "calls/s", ratio=True),
        Metric("p50_ms", "p50 ms", ratio=True),
        Metric("p99_ms", "p99 ms", ratio=True),
        Metric("cpu_ms_per_call", "CPU ms/call", ratio=True),
        Metric("failures", "failures"),
        Metric("requests", "requests"),
    ]

    def params(self, quick: bool) -> dict[str, Any]:
        if quick:
            return {"calls": 300, "rounds": 2, "in_flight": 200, "latency_ms": 50, "warm_up": 100}
        return {"calls": 2000, "rounds": 4, "in_flight": 200, "latency_ms": 50, "warm_up": 200}

    def rounds(self, params: dict[str, Any]) -> int:
        return int(params["rounds"])

    async def prepare(self, case: Case) -> None:
        latency = float(case.params["latency_ms"])
        await case.control(case.primary.set_latency, latency)
        await run_calls(case.contender, int(case.params["warm_up"]), int(case.params["in_flight"]))
        await case.control(case.primary.reset)
        await case.control(case.primary.set_latency, latency)

    async def block(self, case: Case, index: int) -> dict[str, Any]:
        calls = int(case.params["calls"]) // int(case.params["rounds"])
        started, cpu = time.perf_counter(), time.process_time()
        rows = await run_calls(case.contender, calls, int(case.params["in_flight"]))
        elapsed = time.perf_counter() - started
        return {
            "cpu_s": time.process_time() - cpu,
            "seconds": [r.seconds for r in rows],
            "elapsed": elapsed,
            "failures": sum(1 for r in rows if not r.outcome.ok),
        }

    async def finish(self, case: Case) -> dict[str, Any]:
        return {"requests": await case.control(total_requests, case.primary)}

    def measure(
        self, contender: str, blocks: list[dict[str, Any]], final: dict[str, Any], params: Any
    ) -> dict[str, Any]:
        seconds = [s for b in blocks for s in b["seconds"]]
        elapsed = sum(float(b["elapsed"]) for b in blocks)
        lat = latency_summary(seconds)
        cpu = sum(float(b["cpu_s"]) for b in blocks)
        return {
            "n": lat.get("n"),
            "cpu_ms_per_call": round(cpu * 1000 / len(seconds), 3) if seconds else None,
            "calls_per_s": round(len(seconds) / elapsed, 1) if elapsed else None,
            "p50_ms": lat.get("p50_ms"),
            "p99_ms": lat.get("p99_ms"),
            "failures": sum(int(b["failures"]) for b in blocks),
            **final,
        }

    def targets_for(
        self,
        contender: str,
        variant: str,
        metrics: dict[str, Any],
        ratios: dict[str, float | None],
        params: dict[str, Any],
    ) -> list[Target]:
        if contender == BASELINE:
            return []
        value = ratios.get("calls_per_s")
        return [
            Target(
                contender,
                variant,
                f"throughput >= {THROUGHPUT_TARGET} x raw SDK",
                value,
                at_least(value, THROUGHPUT_TARGET),
            )
        ]

    def notes(self, params: dict[str, Any]) -> list[str]:
        return [
            "The SDK's default pool keeps 100 idle connections, so with 200 in flight part of "
            "the calls open a new connection; that is the same for every contender.",
        ]


SCENARIO = Throughput()
