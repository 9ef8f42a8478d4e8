"""8. Fleet: 4 worker processes on one PostgreSQL database during an outage.

Each process runs its own Bulwark gateway on a fresh database ``bulwark_bench_<random>`` on
127.0.0.1:5432 (migrated with ``backend.db.migrate.upgrade``, dropped afterwards); all call one
fake server that answers 503. Counted: the requests the server received after the breaker
first opened (the first ``open`` row in ``breaker_events``), which the shared breaker must keep
at most one per process. For comparison the other breakers run the same fleet, each process
with its own breaker (pybreaker and LiteLLM keep state per process unless given Redis); their
first open is the earliest any process reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from backend.db.migrate import upgrade
from bench.contenders.base import ContenderSpec
from bench.runner import Handle, RunContext
from bench.runner import scenario_params as params_of
from bench.scenarios.base import (
    BASELINE,
    Case,
    Metric,
    Scenario,
    Target,
    at_most,
    run_calls,
    timed_from_list,
    with_ratios,
)
from bench.servers import FakeServer, request_times
from tests.fakes.behaviours import server_error

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
PRIMARY_KEY = "openai:gpt-4o-mini"


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _first_open(database: str) -> float | None:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=database)
    try:
        at: datetime | None = await conn.fetchval(
            "SELECT min(at) FROM breaker_events WHERE key = $1 AND to_state = 'open'",
            PRIMARY_KEY,
        )
    finally:
        await conn.close()
    return None if at is None else at.timestamp()


@contextlib.contextmanager
def fleet_database() -> Iterator[tuple[str, str]]:
    """A fresh, migrated PostgreSQL database; dropped on exit. Yields (name, URL)."""
    name = f"bulwark_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    try:
        upgrade(url)
        yield name, url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def postgres_reachable() -> str | None:
    """None when PostgreSQL answers; else why not."""
    try:
        asyncio.run(_admin("SELECT 1"))
    except Exception as exc:
        return f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT} ({type(exc).__name__}: {exc})"
    return None


class Fleet(Scenario):
    number = 8
    title = "Fleet on one PostgreSQL"
    summary = (
        "4 worker processes, one database, one provider in outage: requests reaching the "
        "provider after the breaker first opened"
    )
    metrics = [  # noqa: RUF012
        Metric("processes", "processes"),
        Metric("calls", "calls"),
        Metric("requests", "requests"),
        Metric("first_open_after_s", "first open after (s)"),
        Metric("requests_after_open", "requests after first open"),
        Metric("refused", "calls refused"),
    ]

    def params(self, quick: bool) -> dict[str, Any]:
        return {"processes": 4, "calls": 10 if quick else 25, "concurrency": 2, "warm_up": 3}

    # -- child side --------------------------------------------------------------------

    async def prepare(self, case: Case) -> None:
        await run_calls(case.contender, int(case.params["warm_up"]), 1)

    async def block(self, case: Case, index: int) -> dict[str, Any]:
        start_at = float(case.message.get("start_at", time.time()))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        rows = await run_calls(
            case.contender, int(case.params["calls"]), int(case.params["concurrency"])
        )
        return {"rows": [r.to_list() for r in rows], "first_open": case.contender.first_open}

    # -- parent side -------------------------------------------------------------------

    def run(self, ctx: RunContext) -> dict[str, Any]:
        params = params_of(self, ctx)
        out: dict[str, Any] = {"params": params, "variants": {}, "targets": []}
        reason = postgres_reachable()
        if reason is not None:
            out["status"] = f"not run: {reason}"
            return out
        metrics: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        for name in ctx.contenders:
            if name == BASELINE:
                continue  # no breaker: nothing opens
            if ctx.quick and name != "bulwark":
                continue  # the comparison fleets run in full runs only
            ctx.log(f"  scenario 8: {name} x {params['processes']} processes")
            try:
                metrics[name] = self._fleet(name, ctx, params)
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"[-2000:]
                ctx.log(f"    {name} failed: {errors[name]}")
        ratios = with_ratios(metrics, self.metrics)
        targets = [
            t for n, m in metrics.items() for t in self.targets_for(n, "default", m, {}, params)
        ]
        out["variants"]["default"] = {"contenders": metrics, "ratios": ratios, "errors": errors}
        out["targets"] = [t.to_dict() for t in targets]
        return out

    def _fleet(self, name: str, ctx: RunContext, params: dict[str, Any]) -> dict[str, Any]:
        processes = int(params["processes"])
        with FakeServer() as server, contextlib.ExitStack() as stack:
            database, url = (
                stack.enter_context(fleet_database()) if name == "bulwark" else (None, None)
            )
            workdir = ctx.workdir / f"s8-{name}"
            workdir.mkdir(parents=True, exist_ok=True)
            spec = ContenderSpec(
                primary_url=server.openai_base_url,
                workdir=str(workdir),
                database_url=url,
                options={"migrate": False},
            )
            handles: list[Handle] = []
            healthy = False
            try:
                for _ in range(processes):
                    setup = {
                        "scenario": self.number,
                        "contender": name,
                        "variant": "default",
                        "params": params,
                        "spec": spec.to_dict(),
                        "primary": server.base_url,
                        "fallback": None,
                    }
                    handle = ctx.pool.acquire(name)
                    handles.append(handle)
                    handle.begin(setup)
                for handle in handles:
                    handle.receive()
                server.reset()
                server.set_default(server_error(503))
                start_at = time.time() + 0.5
                for handle in handles:
                    handle.send({"op": "block", "index": 0, "start_at": start_at})
                blocks = [handle.receive() for handle in handles]
                for handle in handles:
                    handle.send({"op": "finish"})
                    handle.receive()
                healthy = True
            finally:
                for handle in handles:
                    ctx.pool.release(handle, healthy=healthy)
            times = request_times(server)
            if database is not None:
                first_open = asyncio.run(_first_open(database))
            else:
                opens = [b["first_open"] for b in blocks if b.get("first_open") is not None]
                first_open = min(opens) if opens else None
        rows = [timed_from_list(r) for b in blocks for r in b["rows"]]
        after = [t for t, _ in times if first_open is not None and t > first_open]
        return {
            "processes": processes,
            "calls": len(rows),
            "requests": len(times),
            "first_open_after_s": None if first_open is None else round(first_open - start_at, 3),
            "requests_after_open": len(after) if first_open is not None else None,
            "refused": sum(1 for r in rows if r.outcome.refused),
            "failures": sum(1 for r in rows if not r.outcome.ok),
        }

    def targets_for(
        self,
        contender: str,
        variant: str,
        metrics: dict[str, Any],
        ratios: dict[str, float | None],
        params: dict[str, Any],
    ) -> list[Target]:
        limit = int(params["processes"])
        value = metrics.get("requests_after_open")
        return [
            Target(
                contender,
                variant,
                f"requests reaching the provider after the breaker first opens <= {limit}",
                value,
                at_most(value, limit) if value is not None else False,
                "" if value is not None else "the breaker never opened",
            )
        ]

    def notes(self, params: dict[str, Any]) -> list[str]:
        return [
            "The raw SDK has no breaker and sits this one out; --quick runs Bulwark's fleet only.",
            "Bulwark's first open is read from breaker_events (shared); the others' is the "
            "earliest open any of their processes reported (each process has its own breaker).",
            f"Each process makes {params.get('calls')} calls, {params.get('concurrency')} at a "
            "time, all processes starting together.",
        ]


SCENARIO = Fleet()
