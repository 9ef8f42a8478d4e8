"""Worker processes sharing one PostgreSQL task queue: a task outlives ``kill -9`` of its
worker, two workers racing over 100 tasks run each exactly once, and SIGTERM drains.

Each worker is a process of its own, forked by ``python -m tests.e2e.worker_process
--spawner`` (one per module: Bulwark's imports are paid once), running on the simulator (its
latency sets how long a task's steps take). Every run of a task is appended to a runs file, so
the tests count runs rather than trusting the database alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import func, select

from backend.db.engine import create_engine
from backend.db.migrate import upgrade
from backend.db.models import LLMCallRow, TaskRow
from backend.db.task_store import SqlTaskStore
from backend.tasks.model import NewTask, Task, TaskStatus

REPO = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 2.0

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class Spawner:
    """``python -m tests.e2e.worker_process --spawner``: forks worker processes on demand."""

    def __init__(self, log: Path) -> None:
        self._log: IO[str] = log.open("w")
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.worker_process", "--spawner"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.request(None) == {"spawner": "ready"}

    def request(self, command: dict[str, Any] | None) -> dict[str, Any]:
        """Send ``command`` (if any) and read one answer; one request at a time, from any
        thread (the pipes' file objects are not thread-safe)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with self._lock:
            if command is not None:
                self.process.stdin.write(json.dumps(command) + "\n")
                self.process.stdin.flush()
            line = self.process.stdout.readline()
        assert line, "the spawner exited"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()  # the spawner kills and reaps what still runs
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self._log.close()


class WorkerProcess:
    """One forked worker: its messages (stdout) and log (stderr) are files in ``tmp``."""

    def __init__(self, spawner: Spawner, worker_id: str, env: dict[str, str], tmp: Path) -> None:
        self.id = worker_id
        self.spawner = spawner
        self.out = tmp / f"worker-{worker_id}.out"
        self.log = tmp / f"worker-{worker_id}.log"
        command = {"do": "spawn", "id": worker_id, "runs": str(tmp / "runs.txt"), "env": env}
        command.update(cwd=str(tmp), out=str(self.out), log=str(self.log))
        self.pid: int = spawner.request(command)["pid"]
        self.status: int | None = None

    def messages(self) -> list[dict[str, Any]]:
        text = self.out.read_text() if self.out.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    async def said(self, message: dict[str, Any], within: float = 60.0) -> None:
        give_up = time.monotonic() + within
        while message not in self.messages():
            if self.status is None and await self.wait(0) is not None:
                raise AssertionError(f"worker {self.id} exited:\n{self.log.read_text()[-3000:]}")
            assert time.monotonic() < give_up, f"worker {self.id} never said {message}"
            await asyncio.sleep(0.05)

    async def ready(self) -> None:
        await self.said({"ready": self.id})

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)

    async def wait(self, within: float) -> int | None:
        command = {"do": "wait", "id": self.id, "within": within}
        self.status = (await asyncio.to_thread(self.spawner.request, command))["status"]
        return self.status


@pytest.fixture(scope="module")
def spawner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spawner]:
    spawner = Spawner(tmp_path_factory.mktemp("spawner") / "spawner.log")
    try:
        yield spawner
    finally:
        spawner.close()


@pytest.fixture
def fleet_db(postgres_url: str) -> str:
    upgrade(postgres_url)
    return postgres_url


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    path = tmp_path / "runs.txt"
    path.touch()
    return path


@pytest.fixture
async def start(
    spawner: Spawner, fleet_db: str, tmp_path: Path, runs: Path
) -> AsyncIterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(worker_id: str, **settings: Any) -> WorkerProcess:
        env = {
            **os.environ,
            "BULWARK_DATABASE_URL": fleet_db,
            "BULWARK_WORKER_LEASE_SECONDS": str(LEASE_SECONDS),
            "BULWARK_WORKER_POLL_SECONDS": "0.1",
            "BULWARK_HISTORY_FLUSH_SECONDS": "0.1",
        }
        env.update({f"BULWARK_{name.upper()}": str(value) for name, value in settings.items()})
        worker = WorkerProcess(spawner, worker_id, env, tmp_path)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.status is None:
            worker.signal(signal.SIGKILL)
            await worker.wait(10)


@pytest.fixture
async def store(fleet_db: str) -> AsyncIterator[SqlTaskStore]:
    engine = create_engine(fleet_db)
    try:
        yield SqlTaskStore(engine)
    finally:
        await engine.dispose()


async def submit(store: SqlTaskStore, steps: int, text: str = "task") -> Task:
    new = NewTask("key-1", "steps", {"text": text, "steps": steps}, 120.0, 3)
    task, _ = await store.create(new)
    return task


async def wait_for(
    store: SqlTaskStore, task_id: str, until: Callable[[Task], bool], within: float = 20.0
) -> Task:
    give_up = time.monotonic() + within
    while True:
        task = await store.get(task_id)
        assert task is not None
        if until(task):
            return task
        assert time.monotonic() < give_up, f"task never got there: {task}"
        await asyncio.sleep(0.05)


async def scalar(url: str, query: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(query)).scalar_one()
    finally:
        await engine.dispose()


def run_log(runs: Path) -> list[tuple[str, str]]:
    return [
        (task, worker)
        for task, worker in (line.split() for line in runs.read_text().split("\n") if line)
    ]


async def test_a_task_survives_kill_9_of_its_worker(
    start: Callable[..., WorkerProcess], store: SqlTaskStore, fleet_db: str, runs: Path
) -> None:
    workers = {w.id: w for w in (start("A", sim_latency_ms=400), start("B", sim_latency_ms=400))}
    await asyncio.gather(*(w.ready() for w in workers.values()))
    task = await submit(store, steps=6)  # about 2.4 s of simulated calls
    running = await wait_for(store, task.id, lambda t: t.status is TaskStatus.RUNNING)
    victim = workers[running.lease_owner or ""]
    survivor = next(w for w in workers.values() if w is not victim)
    answered = select(func.count()).where(LLMCallRow.task_id == task.id)
    for _ in range(200):  # until two answers are in the history
        if await scalar(fleet_db, answered) >= 2:
            break
        await asyncio.sleep(0.05)
    victim.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    assert await victim.wait(5) == -signal.SIGKILL

    done = await wait_for(store, task.id, lambda t: t.status.finished, within=30)
    took = time.monotonic() - killed_at
    assert done.status is TaskStatus.SUCCEEDED, done.error
    assert done.result is not None and done.result["worker"] == survivor.id
    assert done.attempts == 2 and len(done.result["answers"]) == 6
    assert run_log(runs) == [(task.id, victim.id), (task.id, survivor.id)]
    replayed = select(func.count()).where(LLMCallRow.task_id == task.id, LLMCallRow.replayed)
    assert await scalar(fleet_db, replayed) >= 2  # the dead worker's answers were reused
    assert took < LEASE_SECONDS + 6 * 0.4 + 3, f"took {took:.1f} s after the kill"


async def test_two_workers_racing_over_100_tasks_run_each_exactly_once(
    start: Callable[..., WorkerProcess], store: SqlTaskStore, fleet_db: str, runs: Path
) -> None:
    workers = [start(name, sim_latency_ms=30, worker_concurrency=4) for name in ("A", "B")]
    await asyncio.gather(*(w.ready() for w in workers))
    tasks = [await submit(store, steps=1, text=f"t{i}") for i in range(100)]
    succeeded = select(func.count()).where(TaskRow.status == TaskStatus.SUCCEEDED.value)
    give_up = time.monotonic() + 30
    while await scalar(fleet_db, succeeded) < 100:
        assert time.monotonic() < give_up
        await asyncio.sleep(0.1)

    log = run_log(runs)
    assert sorted(task for task, _ in log) == sorted(t.id for t in tasks)
    assert {worker for _, worker in log} == {"A", "B"}
    claims = select(func.sum(TaskRow.attempts))
    assert await scalar(fleet_db, claims) == 100
    results = select(func.count(func.distinct(TaskRow.id))).where(TaskRow.result.is_not(None))
    assert await scalar(fleet_db, results) == 100


async def test_sigterm_finishes_what_fits_in_the_grace_period_and_releases_the_rest(
    start: Callable[..., WorkerProcess], store: SqlTaskStore, fleet_db: str
) -> None:
    worker = start("A", sim_latency_ms=300, worker_concurrency=2, worker_grace_seconds=1.5)
    await worker.ready()
    short = await submit(store, steps=2)  # 0.6 s: ends within the grace period
    long = await submit(store, steps=100)  # 30 s: does not
    for task in (short, long):
        await wait_for(store, task.id, lambda t: t.status is TaskStatus.RUNNING)
    worker.signal(signal.SIGTERM)
    sent_at = time.monotonic()
    assert await worker.wait(10) == 0
    took = time.monotonic() - sent_at
    assert worker.messages() == [{"ready": "A"}, {"stopped": "A"}]

    finished = await store.get(short.id)
    assert finished is not None and finished.status is TaskStatus.SUCCEEDED
    released = await store.get(long.id)
    assert released is not None and released.status is TaskStatus.QUEUED
    assert (released.attempts, released.lease_owner) == (0, None)
    running = select(func.count()).where(TaskRow.status == TaskStatus.RUNNING.value)
    assert await scalar(fleet_db, running) == 0
    assert 1.5 <= took < 3, f"stopped {took:.1f} s after SIGTERM"
