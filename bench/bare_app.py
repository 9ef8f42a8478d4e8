"""The baseline of scenario 9: a bare FastAPI endpoint and worker doing the same database
writes as a Bulwark task, and nothing else (no auth, no agents, no gateway, no retries).

Per task: the API inserts the ``tasks`` row (queued); a worker claims it (one guarded
``UPDATE``, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), writes ``calls_per_task`` ``llm_calls``
rows with ``attempts_per_call`` ``llm_attempts`` rows each (the counts Bulwark's run of the same
variant wrote), and marks the task succeeded with a result. Same schema (Bulwark's migrations),
same engine settings (``backend.db.engine.create_engine``).

``python -m bench.bare_app --database-url URL --role api|worker|both [--port N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Table, and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.engine import WRITE_TRANSACTION, create_engine
from backend.db.models import LLMAttemptRow, LLMCallRow, TaskRow

T = cast(Table, TaskRow.__table__)
RESULT: dict[str, Any] = {"summary": "ok", "score": 100, "findings": [], "degraded": False}


def _now() -> datetime:
    return datetime.now(UTC)


async def submit(engine: AsyncEngine, body: dict[str, Any]) -> str:
    now = _now()
    task_id = str(uuid.uuid4())
    values = {
        "id": task_id,
        "owner": "bench",
        "type": str(body.get("type", "review")),
        "input": body.get("input", {}),
        "status": "queued",
        "created_at": now,
        "updated_at": now,
        "deadline_at": now + timedelta(seconds=300),
        "deadline_seconds": 300.0,
        "max_attempts": 3,
        "attempts": 0,
        "cancel_requested": False,
    }
    async with engine.connect() as conn:
        await conn.execution_options(**WRITE_TRANSACTION)
        async with conn.begin():
            await conn.execute(insert(T).values(values))
    return task_id


async def claim(engine: AsyncEngine, worker_id: str) -> str | None:
    now = _now()
    query = select(T.c.id).where(T.c.status == "queued").order_by(T.c.created_at).limit(1)
    if engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    async with engine.connect() as conn:
        await conn.execution_options(**WRITE_TRANSACTION)
        async with conn.begin():
            task_id = (await conn.execute(query)).scalar()
            if task_id is None:
                return None
            result = await conn.execute(
                update(T)
                .where(and_(T.c.id == task_id, T.c.status == "queued"))
                .values(
                    status="running",
                    lease_owner=worker_id,
                    lease_expires_at=now + timedelta(seconds=30),
                    started_at=now,
                    updated_at=now,
                    attempts=T.c.attempts + 1,
                )
            )
            return str(task_id) if result.rowcount == 1 else None


async def run_task(
    engine: AsyncEngine, task_id: str, calls_per_task: int, attempts_per_call: int
) -> None:
    now = _now()
    calls: list[dict[str, Any]] = []
    attempts: list[dict[str, Any]] = []
    for _ in range(calls_per_task):
        call_id = str(uuid.uuid4())
        calls.append(
            {
                "id": call_id,
                "context": "bare/review",
                "agent": "bare",
                "task_id": task_id,
                "route": "review",
                "target": "sim:reviewer",
                "outcome": "success",
                "attempts": attempts_per_call,
                "started_at": now,
                "finished_at": now,
                "duration_ms": 0.0,
                "replayed": False,
            }
        )
        attempts.extend(
            {
                "call_id": call_id,
                "attempt": n + 1,
                "target": "sim:reviewer",
                "started_at": now,
                "duration_ms": 0.0,
                "outcome": "success",
                "decision": "succeed",
            }
            for n in range(attempts_per_call)
        )
    async with engine.begin() as conn:
        if calls:
            await conn.execute(insert(LLMCallRow), calls)
        if attempts:
            await conn.execute(insert(LLMAttemptRow), attempts)
    async with engine.connect() as conn:
        await conn.execution_options(**WRITE_TRANSACTION)
        async with conn.begin():
            await conn.execute(
                update(T)
                .where(T.c.id == task_id)
                .values(status="succeeded", result=RESULT, finished_at=_now(), updated_at=_now())
            )


async def work(
    engine: AsyncEngine,
    stop: asyncio.Event,
    *,
    concurrency: int,
    calls_per_task: int,
    attempts_per_call: int,
) -> None:
    """``concurrency`` loops claiming and running tasks until ``stop``."""

    async def loop(n: int) -> None:
        worker_id = f"bare-{uuid.uuid4().hex[:8]}-{n}"
        while not stop.is_set():
            task_id = await claim(engine, worker_id)
            if task_id is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.05)
                continue
            await run_task(engine, task_id, calls_per_task, attempts_per_call)

    await asyncio.gather(*(loop(n) for n in range(concurrency)))


def create_bare_app(database_url: str, *, worker: bool, **work_options: int) -> FastAPI:
    state: dict[str, AsyncEngine] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(database_url)
        state["engine"] = engine
        stop = asyncio.Event()
        runner = asyncio.create_task(work(engine, stop, **work_options)) if worker else None
        try:
            yield
        finally:
            stop.set()
            if runner is not None:
                await runner
            await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/tasks", status_code=202)
    async def submit_task(request: Request) -> JSONResponse:
        task_id = await submit(state["engine"], await request.json())
        return JSONResponse({"id": task_id, "status": "queued"}, status_code=202)

    return app


async def _worker_main(database_url: str, **work_options: int) -> None:
    engine = create_engine(database_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await work(engine, stop, **work_options)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_app", description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--role", choices=("api", "worker", "both"), default="both")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--calls-per-task", type=int, default=1)
    parser.add_argument("--attempts-per-call", type=int, default=1)
    args = parser.parse_args(argv)
    options = {
        "concurrency": args.concurrency,
        "calls_per_task": args.calls_per_task,
        "attempts_per_call": args.attempts_per_call,
    }
    if args.role == "worker":
        asyncio.run(_worker_main(args.database_url, **options))
        return 0
    import uvicorn

    app = create_bare_app(args.database_url, worker=args.role == "both", **options)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
