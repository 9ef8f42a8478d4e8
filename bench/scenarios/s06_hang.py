"""6. Hang: the primary accepts the request and never answers. Attempt timeout 1 s, call
deadline 1 s; the time to error must stay within 1.1 s.

Each contender applies the deadline with what it has: Bulwark's ``deadline=``, LiteLLM's
per-call ``timeout``, tenacity's ``stop_after_delay`` plus ``asyncio.timeout``, and for the raw
SDK an ``asyncio.timeout`` around the call (the SDK alone would retry the timeout twice).
"""

from __future__ import annotations

from typing import Any

from bench.common import latency_summary
from bench.contenders.base import ContenderSpec
from bench.scenarios.base import Case, Metric, Scenario, Target, at_most, run_calls
from bench.servers import total_requests
from tests.fakes.behaviours import hang

LIMIT_S = 1.1


class Hang(Scenario):
    number = 6
    title = "Hang"
    summary = "no answer ever; 1 s attempt timeout and 1 s call deadline: time to error"
    parallel_in_quick = True
    metrics = [  # noqa: RUF012
        Metric("calls", "calls"),
        Metric("p50_ms", "time to error p50 ms", ratio=True),
        Metric("max_ms", "time to error max ms", ratio=True),
        Metric("requests", "requests"),
        Metric("errors", "errors"),
    ]

    def params(self, quick: bool) -> dict[str, Any]:
        return {"calls": 2 if quick else 5, "attempt_timeout": 1.0, "deadline": 1.0, "warm_up": 5}

    def spec(self, base: ContenderSpec, params: dict[str, Any], variant: str) -> ContenderSpec:
        return base.with_settings(attempt_timeout=float(params["attempt_timeout"]))

    async def prepare(self, case: Case) -> None:
        await case.warm_up(int(case.params["warm_up"]))
        await case.control(case.primary.set_default, hang())

    async def block(self, case: Case, index: int) -> dict[str, Any]:
        rows = await run_calls(
            case.contender, int(case.params["calls"]), 1, budget=float(case.params["deadline"])
        )
        return {
            "seconds": [r.seconds for r in rows],
            "ok": sum(1 for r in rows if r.outcome.ok),
            "errors": sorted({r.outcome.error for r in rows if r.outcome.error}),
            "requests": await case.control(total_requests, case.primary),
        }

    def measure(
        self, contender: str, blocks: list[dict[str, Any]], final: dict[str, Any], params: Any
    ) -> dict[str, Any]:
        block = blocks[0]
        lat = latency_summary(block["seconds"])
        return {
            "calls": lat.get("n"),
            "p50_ms": lat.get("p50_ms"),
            "max_ms": lat.get("max_ms"),
            "requests": block["requests"],
            "errors": block["errors"],
            "succeeded": block["ok"],
        }

    def targets_for(
        self,
        contender: str,
        variant: str,
        metrics: dict[str, Any],
        ratios: dict[str, float | None],
        params: dict[str, Any],
    ) -> list[Target]:
        worst = metrics["max_ms"]
        return [
            Target(
                contender,
                variant,
                f"time to error <= {LIMIT_S} s (worst call)",
                None if worst is None else round(worst / 1000, 3),
                at_most(None if worst is None else worst / 1000, LIMIT_S),
            )
        ]


SCENARIO = Hang()
