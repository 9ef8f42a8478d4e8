"""5. Outage, then recovery: the primary answers 503 for ``outage`` seconds, then normally;
one call starts every ``interval`` seconds (open loop) for ``duration`` seconds, with a healthy
second target in the route.

Measured: requests reaching the primary during the outage, the success rate of the calls
started during it, and the time from the recovery until the primary serves again (the first
request the fake server answered normally after the switch). With the common 60 s open time
the primary cannot serve again inside the window; that variant reports when its breaker would
let a probe through instead, and a variant with ``open_seconds=2`` (clearly labelled) shows
recovery inside the window.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import COMMON
from bench.contenders.base import ContenderSpec
from bench.scenarios.base import BASELINE, Case, Metric, Scenario, Target, Timed, timed_call
from bench.servers import request_times
from tests.fakes.behaviours import reply, server_error

COMMON_VARIANT = "open 60 s (common settings)"
SHORT_VARIANT = "open 2 s (variant: open_seconds=2)"
SHORT_OPEN = 2.0
SLACK = 1.0


class Recovery(Scenario):
    number = 5
    title = "Outage then recovery"
    summary = (
        "503 for the outage, then healthy; one call every 100 ms (open loop) with a healthy "
        "second target: requests and success during the outage, time until the primary "
        "serves again"
    )
    needs_fallback_server = True
    parallel_in_quick = True
    metrics = [  # noqa: RUF012
        Metric("calls", "calls"),
        Metric("outage_requests", "primary requests in outage", ratio=True),
        Metric("outage_success_rate", "success in outage"),
        Metric("success_rate", "success overall"),
        Metric("recovery_s", "primary serves again after (s)"),
        Metric("predicted_recovery_s", "breaker probes after (s)"),
        Metric("served_by_primary_after", "calls on primary after recovery"),
    ]

    def params(self, quick: bool) -> dict[str, Any]:
        if quick:
            return {"outage": 2.0, "duration": 5.0, "interval": 0.1, "warm_up": 5}
        return {"outage": 5.0, "duration": 12.0, "interval": 0.1, "warm_up": 10}

    def variants(self, params: dict[str, Any]) -> list[str]:
        return [COMMON_VARIANT, SHORT_VARIANT]

    def contenders(self, available: list[str], variant: str) -> list[str]:
        if variant == COMMON_VARIANT:
            return list(available)  # the raw SDK too: no fallback, but it recovers at once
        return [name for name in available if name != BASELINE]

    def spec(self, base: ContenderSpec, params: dict[str, Any], variant: str) -> ContenderSpec:
        if variant == SHORT_VARIANT:
            return base.with_settings(open_seconds=SHORT_OPEN)
        return base

    async def prepare(self, case: Case) -> None:
        await case.warm_up(int(case.params["warm_up"]))

    async def block(self, case: Case, index: int) -> dict[str, Any]:
        p = case.params
        outage, duration, interval = float(p["outage"]), float(p["duration"]), float(p["interval"])
        loop = asyncio.get_running_loop()
        await case.control(case.primary.set_default, server_error(503))
        t0_wall, t0 = time.time(), loop.time()
        calls: list[asyncio.Task[Timed]] = []
        recover_at: float | None = None
        count = round(duration / interval)
        for i in range(count):
            when = t0 + i * interval
            if recover_at is None and when >= t0 + outage:
                await asyncio.sleep(max(0.0, t0 + outage - loop.time()))
                recover_at = time.time()
                await case.control(case.primary.set_default, reply())
            await asyncio.sleep(max(0.0, when - loop.time()))
            calls.append(asyncio.create_task(timed_call(case.contender)))
        rows = await asyncio.gather(*calls)
        if recover_at is None:
            recover_at = t0_wall + outage
        served = await case.control(request_times, case.primary)
        return {
            "t0": t0_wall,
            "recover_at": recover_at,
            "rows": [r.to_list() for r in rows],
            "primary_requests": served,
            "first_open": case.contender.first_open,
            "open_seconds": case.contender.spec.settings.open_seconds,
        }

    def measure(
        self, contender: str, blocks: list[dict[str, Any]], final: dict[str, Any], params: Any
    ) -> dict[str, Any]:
        block = blocks[0]
        recover_at = float(block["recover_at"])
        rows = block["rows"]  # [started, seconds, ok, served_by, error, refused]
        during = [r for r in rows if r[0] < recover_at]
        after = [r for r in rows if r[0] >= recover_at]
        primary = block["primary_requests"]  # [received_at, behaviour kind]
        answered = [t for t, kind in primary if kind == "reply" and t >= recover_at]
        first_open = block.get("first_open")
        open_seconds = float(block["open_seconds"])
        return {
            "calls": len(rows),
            "outage_requests": sum(1 for t, kind in primary if kind == "error"),
            "outage_calls": len(during),
            "outage_success_rate": round(sum(1 for r in during if r[2]) / len(during), 3)
            if during
            else None,
            "success_rate": round(sum(1 for r in rows if r[2]) / len(rows), 3) if rows else None,
            "recovery_s": round(min(answered) - recover_at, 3) if answered else None,
            "breaker_opened_after_s": None
            if first_open is None
            else round(first_open - float(block["t0"]), 3),
            "predicted_recovery_s": None
            if first_open is None or not open_seconds
            else round(max(0.0, first_open + open_seconds - recover_at), 3),
            "served_by_primary_after": sum(1 for r in after if r[3] == "primary"),
        }

    def targets_for(
        self,
        contender: str,
        variant: str,
        metrics: dict[str, Any],
        ratios: dict[str, float | None],
        params: dict[str, Any],
    ) -> list[Target]:
        open_seconds = SHORT_OPEN if variant == SHORT_VARIANT else COMMON.open_seconds
        limit = open_seconds + SLACK
        recovery = metrics["recovery_s"]
        out = []
        if contender != BASELINE:
            out.append(
                Target(
                    contender,
                    variant,
                    "100 % of the calls during the outage succeed (fallback)",
                    metrics["outage_success_rate"],
                    metrics["outage_success_rate"] == 1.0,
                )
            )
        if recovery is not None:
            met: bool | None = recovery <= limit
            note = ""
        elif variant == COMMON_VARIANT and contender != BASELINE:
            predicted = metrics.get("predicted_recovery_s")
            met = None
            note = (
                f"not observable: the primary cannot serve again inside the "
                f"{params['duration']:g} s window with a {open_seconds:g} s open time"
                + (
                    f"; its breaker would probe {predicted:g} s after the recovery"
                    if predicted is not None
                    else ""
                )
            )
        else:
            met, note = False, "the primary never served again inside the window"
        out.append(
            Target(
                contender,
                variant,
                f"primary serves again <= open time + {SLACK:g} s ({limit:g} s) after recovery",
                recovery,
                met,
                note,
            )
        )
        return out

    def notes(self, params: dict[str, Any]) -> list[str]:
        return [
            "The raw SDK (no breaker, no second target) runs the common variant only, as the "
            "reference for requests during the outage.",
            f"'{SHORT_VARIANT}' changes only the open time (pybreaker reset_timeout, LiteLLM "
            "cooldown_time, Bulwark breaker_open_seconds).",
            "'breaker probes after' = when the contender's breaker first opened + open time, "
            "relative to the recovery (0 if it probes at once).",
        ]


SCENARIO = Recovery()
