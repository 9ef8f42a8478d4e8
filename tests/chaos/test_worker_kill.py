"""``kill -9`` of worker processes in the middle of a 200-task run on PostgreSQL: every task
ends succeeded, each run to completion by exactly one worker, none lost.

The workers are real processes forked by the e2e fork server (``tests.e2e.worker_process``),
on the simulator; every start of a task is appended to a runs file, so the test counts runs
instead of trusting the database alone."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.db.engine import create_engine
from backend.db.migrate import upgrade_async
from backend.db.models import LLMCallRow, TaskRow
from backend.db.task_store import SqlTaskStore
from backend.tasks.model import NewTask, TaskStatus
from tests.e2e.test_worker_processes import Spawner, WorkerProcess, run_log

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TASKS = 200
STEPS = 2
LATENCY_MS = 60  # a task: two simulator calls, ~150-250 ms with the bookkeeping
LEASE_SECONDS = 2.0


@pytest.fixture
def spawner(tmp_path: Path) -> Iterator[Spawner]:
    spawner = Spawner(tmp_path / "spawner.log")
    try:
        yield spawner
    finally:
        spawner.close()  # kills and reaps every worker still running


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[Any]:
    await upgrade_async(postgres_url)
    engine = create_engine(postgres_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def count(engine: Any, query: Any) -> int:
    async with engine.connect() as conn:
        value: int = (await conn.execute(query)).scalar_one()
        return value


async def test_kill_9_of_two_workers_during_200_tasks_loses_none_and_runs_each_once(
    spawner: Spawner, engine: Any, postgres_url: str, tmp_path: Path
) -> None:
    (tmp_path / "runs.txt").touch()
    env = {
        **os.environ,
        "BULWARK_DATABASE_URL": postgres_url,
        "BULWARK_WORKER_LEASE_SECONDS": str(LEASE_SECONDS),
        "BULWARK_WORKER_POLL_SECONDS": "0.1",
        "BULWARK_HISTORY_FLUSH_SECONDS": "0.1",
        "BULWARK_WORKER_CONCURRENCY": "2",
        "BULWARK_SIM_LATENCY_MS": str(LATENCY_MS),
    }
    workers = {name: WorkerProcess(spawner, name, env, tmp_path) for name in "ABC"}
    try:
        await asyncio.gather(*(w.ready() for w in workers.values()))
        store = SqlTaskStore(engine)
        ids = []
        for i in range(TASKS):
            task, _ = await store.create(
                NewTask("key-1", "steps", {"text": f"t{i}", "steps": STEPS}, 120.0, 3)
            )
            ids.append(task.id)

        succeeded = select(func.count()).where(TaskRow.status == TaskStatus.SUCCEEDED.value)
        killed: dict[str, float] = {}
        give_up = time.monotonic() + 90
        for victim, replacement, at in (("A", "D", TASKS // 4), ("B", "E", TASKS // 2)):
            while await count(engine, succeeded) < at:
                assert time.monotonic() < give_up, "the run stalled before the kills"
                await asyncio.sleep(0.05)
            running = select(func.count()).where(
                TaskRow.status == TaskStatus.RUNNING.value, TaskRow.lease_owner == victim
            )
            assert await count(engine, running) > 0, f"{victim} ran nothing when killed"
            workers[victim].signal(signal.SIGKILL)
            killed[victim] = time.monotonic()
            assert await workers[victim].wait(5) == -signal.SIGKILL
            workers[replacement] = WorkerProcess(spawner, replacement, env, tmp_path)
            await workers[replacement].ready()

        while await count(engine, succeeded) < TASKS:
            statuses = select(TaskRow.status, func.count()).group_by(TaskRow.status)
            async with engine.connect() as conn:
                seen = dict((await conn.execute(statuses)).all())
            assert time.monotonic() < give_up, f"not all tasks succeeded: {seen}"
            await asyncio.sleep(0.1)
    finally:
        for worker in workers.values():
            if worker.status is None:
                worker.signal(signal.SIGKILL)
                await worker.wait(10)

    async with engine.connect() as conn:
        columns = (TaskRow.id, TaskRow.status, TaskRow.result, TaskRow.attempts)
        rows = (await conn.execute(select(*columns, TaskRow.lease_owner))).all()
        calls = (
            await conn.execute(
                select(LLMCallRow.task_id, LLMCallRow.replayed, func.count()).group_by(
                    LLMCallRow.task_id, LLMCallRow.replayed
                )
            )
        ).all()
    final = Counter(row.status for row in rows)
    assert final == {TaskStatus.SUCCEEDED.value: TASKS}, final
    assert sorted(row.id for row in rows) == sorted(ids)  # none lost, none invented

    runs: dict[str, list[str]] = defaultdict(list)
    for task_id, runner in run_log(tmp_path / "runs.txt"):
        runs[task_id].append(runner)
    assert set(runs) == set(ids)
    rerun = {task_id: who for task_id, who in runs.items() if len(who) > 1}
    assert rerun, "no task was interrupted by the kills"
    for row in rows:
        who = runs[row.id]
        # Only a killed worker's run is ever repeated; the last run is the one that finished.
        assert all(runner in killed for runner in who[:-1]), (row.id, who)
        assert row.result is not None and row.result["worker"] == who[-1], (row.id, who)
        assert len(row.result["answers"]) == STEPS
        # A claim may die before its run starts (killed between claim and run).
        assert len(who) <= row.attempts <= len(who) + len(killed), (row.id, row.attempts, who)
        assert row.lease_owner is None or row.lease_owner == who[-1]

    fresh = {task_id: n for task_id, replayed, n in calls if not replayed}
    replayed = {task_id: n for task_id, replayed, n in calls if replayed}
    for task_id in ids:
        if task_id not in rerun:  # one run: its calls recorded once, nothing replayed
            assert (fresh.get(task_id, 0), replayed.get(task_id, 0)) == (STEPS, 0), task_id
        else:  # every step answered at least once; the finishing run made up the rest
            assert fresh.get(task_id, 0) + replayed.get(task_id, 0) >= STEPS
            assert fresh.get(task_id, 0) <= STEPS * len(runs[task_id]), task_id
