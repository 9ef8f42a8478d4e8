"""4. Auth failure: the primary answers 401 to every request.

A bad key is not an outage: one request per call (no retry), the breaker never opens on it
(the primary is not skipped when the key is fixed), and with a second target the calls
succeed there.
"""

from __future__ import annotations

from typing import Any

from bench.common import latency_summary
from bench.scenarios.base import (
    Case,
    Metric,
    Scenario,
    Target,
    at_least,
    run_calls,
    timed_from_list,
)
from bench.servers import total_requests
from tests.fakes.behaviours import auth_error


class Auth(Scenario):
    number = 4
    title = "Auth failure"
    summary = "401 on every request, sequential calls: requests per call, breaker, fallback"
    needs_fallback_server = True
    parallel_in_quick = True
    metrics = [  # noqa: RUF012
        Metric("calls", "calls"),
        Metric("requests_per_call", "requests/call", ratio=True),
        Metric("breaker_opened", "breaker opened"),
        Metric("success_rate", "success"),
        Metric("p50_ms", "p50 ms", ratio=True),
        Metric("p99_ms", "p99 ms", ratio=True),
    ]

    def params(self, quick: bool) -> dict[str, Any]:
        return {"calls": 10 if quick else 20, "warm_up": 5}

    def variants(self, params: dict[str, Any]) -> list[str]:
        return ["primary only", "with a healthy second target"]

    def uses_fallback(self, variant: str) -> bool:
        return variant != "primary only"

    async def prepare(self, case: Case) -> None:
        await case.warm_up(int(case.params["warm_up"]))
        await case.control(case.primary.set_default, auth_error())

    async def block(self, case: Case, index: int) -> dict[str, Any]:
        rows = await run_calls(case.contender, int(case.params["calls"]), 1)
        opened = await case.contender.breaker_open()
        return {
            "rows": [r.to_list() for r in rows],
            "requests": await case.control(total_requests, case.primary),
            "breaker_opened": None
            if opened is None
            else bool(opened or case.contender.first_open is not None),
        }

    def measure(
        self, contender: str, blocks: list[dict[str, Any]], final: dict[str, Any], params: Any
    ) -> dict[str, Any]:
        block = blocks[0]
        rows = [timed_from_list(r) for r in block["rows"]]
        calls = len(rows)
        lat = latency_summary([r.seconds for r in rows])
        return {
            "calls": calls,
            "requests": block["requests"],
            "requests_per_call": round(block["requests"] / calls, 3) if calls else None,
            "breaker_opened": block["breaker_opened"],
            "success_rate": round(sum(r.outcome.ok for r in rows) / calls, 3) if calls else None,
            "errors": sorted({r.outcome.error for r in rows if r.outcome.error}),
            "p50_ms": lat.get("p50_ms"),
            "p99_ms": lat.get("p99_ms"),
        }

    def targets_for(
        self,
        contender: str,
        variant: str,
        metrics: dict[str, Any],
        ratios: dict[str, float | None],
        params: dict[str, Any],
    ) -> list[Target]:
        out = []
        if variant == "primary only":
            out.append(
                Target(
                    contender,
                    variant,
                    "one request per call",
                    metrics["requests_per_call"],
                    metrics["requests_per_call"] == 1,
                )
            )
        if metrics["breaker_opened"] is not None:
            out.append(
                Target(
                    contender,
                    variant,
                    "the breaker never opens",
                    metrics["breaker_opened"],
                    not metrics["breaker_opened"],
                )
            )
        if variant != "primary only":
            out.append(
                Target(
                    contender,
                    variant,
                    "calls succeed on the second target",
                    metrics["success_rate"],
                    at_least(metrics["success_rate"], 1.0),
                )
            )
        return out

    def notes(self, params: dict[str, Any]) -> list[str]:
        return ["The raw SDK has no second target, so it sits out the variant with one."]


SCENARIO = Auth()
