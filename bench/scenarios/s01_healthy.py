"""1. Healthy overhead: sequential calls to a provider answering at once (0 ms latency).

The calls are split into rounds; in each round every contender makes its share in turn, so a
change of machine load during the run reaches every contender alike. Bulwark runs its real
stack (SQLite history, SQL breaker store, default settings) and must have recorded every
attempt: the attempt rows it wrote equal the requests the fake server received.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import latency_summary
from bench.scenarios.base import BASELINE, Case, Metric, Scenario, Target, at_most, run_calls
from bench.servers import total_requests

OVERHEAD_TARGET = 1.10


class Healthy(Scenario):
    number = 1
    title = "Healthy overhead"
    summary = "sequential calls, 0 ms provider latency: p50 and p99 per call"
    metrics = [  # noqa: RUF012
        Metric("n", "calls"),
        Metric("p50_ms", "p50 ms", ratio=True),
        Metric("p99_ms", "p99 ms", ratio=True),
        Metric("mean_ms", "mean ms", ratio=True),
        Metric("cpu_ms_per_call", "CPU ms/call", ratio=True),
        Metric("failures", "failures"),
        Metric("requests", "requests"),
        Metric("recorded_attempts", "attempt rows"),
    ]

    def params(self, quick: bool) -> dict[str, Any]:
        if quick:
            return {"calls": 200, "rounds": 4, "warm_up": 30}
        return {"calls": 1000, "rounds": 10, "warm_up": 100}

    def rounds(self, params: dict[str, Any]) -> int:
        return int(params["rounds"])

    async def prepare(self, case: Case) -> None:
        await case.warm_up(int(case.params["warm_up"]))
        case.scratch["recorded_before"] = await case.contender.recorded_attempts()

    async def block(self, case: Case, index: int) -> dict[str, Any]:
        calls = int(case.params["calls"]) // int(case.params["rounds"])
        cpu = time.process_time()
        rows = await run_calls(case.contender, calls, 1)
        return {
            "cpu_s": time.process_time() - cpu,
            "seconds": [r.seconds for r in rows],
            "failures": sum(1 for r in rows if not r.outcome.ok),
        }

    async def finish(self, case: Case) -> dict[str, Any]:
        requests = await case.control(total_requests, case.primary)
        recorded = await case.contender.recorded_attempts()
        before = case.scratch.get("recorded_before")
        return {
            "requests": requests,
            "recorded_attempts": None if recorded is None else recorded - (before or 0),
        }

    def measure(
        self, contender: str, blocks: list[dict[str, Any]], final: dict[str, Any], params: Any
    ) -> dict[str, Any]:
        seconds = [s for block in blocks for s in block["seconds"]]
        cpu = sum(float(b["cpu_s"]) for b in blocks)
        return {
            **latency_summary(seconds),
            "cpu_ms_per_call": round(cpu * 1000 / len(seconds), 3) if seconds else None,
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
        out = [
            Target(
                contender,
                variant,
                f"p50 <= {OVERHEAD_TARGET:.2f} x raw SDK",
                ratios.get("p50_ms"),
                at_most(ratios.get("p50_ms"), OVERHEAD_TARGET),
            ),
            Target(
                contender,
                variant,
                f"p99 <= {OVERHEAD_TARGET:.2f} x raw SDK",
                ratios.get("p99_ms"),
                at_most(ratios.get("p99_ms"), OVERHEAD_TARGET),
            ),
        ]
        if metrics.get("recorded_attempts") is not None:
            recorded, requests = metrics["recorded_attempts"], metrics.get("requests")
            out.append(
                Target(
                    contender,
                    variant,
                    "every attempt recorded (attempt rows = requests received)",
                    f"{recorded} / {requests}",
                    recorded == requests,
                )
            )
        return out


SCENARIO = Healthy()
