"""3. Rate limit: the first 3 requests get 429 with ``Retry-After: 1``, then answers.

One call per contender. Measured at the fake server: the requests and the gaps between them
(a gap under 1 s is a retry that came before the Retry-After), and the call's total time.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from bench.scenarios.base import Case, Metric, Scenario, Target, at_most, timed_call
from bench.servers import request_times
from tests.fakes.behaviours import rate_limit

TOTAL_SECONDS = 3.1
RETRY_AFTER = 1.0


class RateLimit(Scenario):
    number = 3
    title = "Rate limit"
    summary = "429 with Retry-After 1 s on the first 3 requests: success, waits, total time"
    parallel_in_quick = True
    metrics = [  # noqa: RUF012
        Metric("ok", "succeeded"),
        Metric("requests", "requests"),
        Metric("gaps_s", "gaps between requests (s)"),
        Metric("min_gap_s", "shortest gap (s)"),
        Metric("total_s", "total (s)", ratio=True),
        Metric("error", "error"),
    ]

    def params(self, quick: bool) -> dict[str, Any]:
        return {"failures": 3, "retry_after": RETRY_AFTER, "warm_up": 5}

    async def prepare(self, case: Case) -> None:
        await case.warm_up(int(case.params["warm_up"]))
        limited = rate_limit(retry_after=float(case.params["retry_after"]))
        await case.control(case.primary.script, [limited] * int(case.params["failures"]))

    async def block(self, case: Case, index: int) -> dict[str, Any]:
        started = time.time()
        row = await timed_call(case.contender)
        times = await case.control(request_times, case.primary)
        stamps = [t for t, _ in times]
        gaps = [round(b - a, 3) for a, b in itertools.pairwise(stamps)]
        return {
            "ok": row.outcome.ok,
            "error": row.outcome.error,
            "total_s": round(row.seconds, 3),
            "requests": len(stamps),
            "first_request_after_s": round(stamps[0] - started, 3) if stamps else None,
            "gaps_s": gaps,
            "min_gap_s": min(gaps) if gaps else None,
        }

    def measure(
        self, contender: str, blocks: list[dict[str, Any]], final: dict[str, Any], params: Any
    ) -> dict[str, Any]:
        return dict(blocks[0])

    def targets_for(
        self,
        contender: str,
        variant: str,
        metrics: dict[str, Any],
        ratios: dict[str, float | None],
        params: dict[str, Any],
    ) -> list[Target]:
        min_gap = metrics.get("min_gap_s")
        early = min_gap is not None and min_gap < float(params["retry_after"])
        return [
            Target(contender, variant, "the call succeeds", metrics["ok"], bool(metrics["ok"])),
            Target(
                contender,
                variant,
                "no retry before the Retry-After (every gap >= 1 s)",
                min_gap,
                None if min_gap is None else not early,
            ),
            Target(
                contender,
                variant,
                f"total <= {TOTAL_SECONDS} s",
                metrics["total_s"],
                at_most(metrics["total_s"], TOTAL_SECONDS) if metrics["ok"] else False,
                "" if metrics["ok"] else "the call failed",
            ),
        ]

    def notes(self, params: dict[str, Any]) -> list[str]:
        return [
            "Gaps are measured at the fake server between consecutive requests' arrival; the "
            "429 is sent as soon as a request arrives.",
            "The raw SDK retries twice by default, so 3 rate-limited requests exhaust it.",
        ]


SCENARIO = RateLimit()
