"""2. Sustained outage: the primary answers 503 to every request.

Calls run ``concurrency`` at a time. Measured: requests that reached the primary per call,
time to error (every call, and the calls started once the contender's breaker had opened),
and, with a healthy second target in the route, the share of calls that succeed.
"""

from __future__ import annotations

from typing import Any

from bench.common import latency_summary
from bench.scenarios.base import (
    BASELINE,
    Case,
    Metric,
    Scenario,
    Target,
    Timed,
    at_least,
    at_most,
    run_calls,
    timed_from_list,
)
from bench.servers import total_requests
from tests.fakes.behaviours import server_error

REQUESTS_PER_CALL = 0.1
OPEN_P99_MS = 1.0


def outage_block(rows: list[Timed], case: Case, requests: int) -> dict[str, Any]:
    return {
        "rows": [r.to_list() for r in rows],
        "requests": requests,
        "first_open": case.contender.first_open,
    }


def outage_metrics(block: dict[str, Any]) -> dict[str, Any]:
    """Requests per call, time to error / to answer, and the calls once the breaker opened."""
    rows = [timed_from_list(r) for r in block["rows"]]
    calls = len(rows)
    first_open = block.get("first_open")
    once_open = [r for r in rows if first_open is not None and r.started >= first_open]
    failed = [r for r in rows if not r.outcome.ok]
    out: dict[str, Any] = {
        "calls": calls,
        "requests": block["requests"],
        "requests_per_call": round(block["requests"] / calls, 3) if calls else None,
        "success_rate": round(sum(r.outcome.ok for r in rows) / calls, 3) if calls else None,
        "refused": sum(1 for r in rows if r.outcome.refused),
        "calls_once_open": len(once_open),
    }
    error_lat = latency_summary([r.seconds for r in failed])
    out["error_p50_ms"] = error_lat.get("p50_ms")
    out["error_p99_ms"] = error_lat.get("p99_ms")
    all_lat = latency_summary([r.seconds for r in rows])
    out["p50_ms"] = all_lat.get("p50_ms")
    out["p99_ms"] = all_lat.get("p99_ms")
    open_lat = latency_summary([r.seconds for r in once_open])
    out["open_p50_ms"] = open_lat.get("p50_ms")
    out["open_p99_ms"] = open_lat.get("p99_ms")
    return out


class Outage(Scenario):
    number = 2
    title = "Sustained outage"
    summary = "503 on every request, calls 10 at a time: provider requests per call, time to error"
    needs_fallback_server = True
    parallel_in_quick = True
    metrics = [  # noqa: RUF012
        Metric("calls", "calls"),
        Metric("requests_per_call", "requests/call", ratio=True),
        Metric("p50_ms", "p50 ms", ratio=True),
        Metric("p99_ms", "p99 ms", ratio=True),
        Metric("calls_once_open", "calls once open"),
        Metric("open_p50_ms", "once open p50 ms"),
        Metric("open_p99_ms", "once open p99 ms"),
        Metric("success_rate", "success"),
    ]

    def params(self, quick: bool) -> dict[str, Any]:
        if quick:
            return {"calls": 40, "concurrency": 10, "warm_up": 10}
        return {"calls": 100, "concurrency": 10, "warm_up": 20}

    def variants(self, params: dict[str, Any]) -> list[str]:
        return ["primary only", "with a healthy second target"]

    def uses_fallback(self, variant: str) -> bool:
        return variant != "primary only"

    async def prepare(self, case: Case) -> None:
        await case.warm_up(int(case.params["warm_up"]))
        await case.control(case.primary.set_default, server_error(503))

    async def block(self, case: Case, index: int) -> dict[str, Any]:
        rows = await run_calls(
            case.contender, int(case.params["calls"]), int(case.params["concurrency"])
        )
        return outage_block(rows, case, await case.control(total_requests, case.primary))

    def measure(
        self, contender: str, blocks: list[dict[str, Any]], final: dict[str, Any], params: Any
    ) -> dict[str, Any]:
        return outage_metrics(blocks[0])

    def targets_for(
        self,
        contender: str,
        variant: str,
        metrics: dict[str, Any],
        ratios: dict[str, float | None],
        params: dict[str, Any],
    ) -> list[Target]:
        if variant == "primary only":
            out = [
                Target(
                    contender,
                    variant,
                    f"requests reaching the provider per call <= {REQUESTS_PER_CALL}",
                    metrics["requests_per_call"],
                    at_most(metrics["requests_per_call"], REQUESTS_PER_CALL),
                )
            ]
            if contender != BASELINE:
                note = "" if metrics["calls_once_open"] else "the breaker never opened"
                out.append(
                    Target(
                        contender,
                        variant,
                        f"time to error once open p99 <= {OPEN_P99_MS:g} ms",
                        metrics["open_p99_ms"],
                        at_most(metrics["open_p99_ms"], OPEN_P99_MS)
                        if metrics["calls_once_open"]
                        else False,
                        note,
                    )
                )
            return out
        if contender == BASELINE:
            return []
        return [
            Target(
                contender,
                variant,
                "100 % of calls succeed",
                metrics["success_rate"],
                at_least(metrics["success_rate"], 1.0),
            )
        ]

    def notes(self, params: dict[str, Any]) -> list[str]:
        return [
            "'once open': calls started after the contender's breaker (LiteLLM: cooldown) "
            "first opened; the raw SDK has no breaker.",
            "The raw SDK has no second target, so it sits out the variant with one.",
        ]


SCENARIO = Outage()
