"""9. Tasks end to end: review tasks submitted through the REST API and run by workers with
the simulator provider (no provider key: routes default to ``sim``), until every task has
finished.

Two layouts: SQLite, one ``bulwark serve`` process (API and embedded workers); PostgreSQL, two
``bulwark serve --no-workers`` processes and two ``bulwark worker`` processes on a fresh
database. Default settings otherwise (4 tasks at once per worker, 100 queued tasks per client:
submissions answered 429 are retried after a pause). The baseline is a bare FastAPI endpoint and
worker doing the same database writes (:mod:`bench.bare_app`) in the same layout; the ratio is
Bulwark's tasks/s over the bare app's.

tasks/s = finished tasks / (the last ``finished_at`` - the first submission).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
from sqlalchemy import distinct, func, select

from backend.db.engine import create_engine
from backend.db.migrate import upgrade
from backend.db.models import LLMAttemptRow, LLMCallRow, TaskRow
from bench.common import REPO_ROOT, child_env, latency_summary
from bench.runner import RunContext, scenario_params
from bench.scenarios.base import Metric, Scenario, Target
from bench.scenarios.s08_fleet import fleet_database, postgres_reachable

SQLITE = "sqlite (1 process)"
POSTGRES = "postgresql (2 API + 2 worker processes)"
REVIEW = {"type": "review", "input": {"code": "def add(a, b):\n    return a + b\n"}}
CLI = "import sys; from backend.cli import main; sys.exit(main(sys.argv[1:]))"


class NotReady(RuntimeError):
    """The service could not be started: the scenario reports "not run"."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Service:
    """A server process of the scenario, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[str] = self.log_path.open("w")
        self.process = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def tail(self, lines: int = 6) -> str:
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:])

    def wait_ready(self, url: str | None, timeout: float = 240.0) -> None:
        """Until ``url`` answers 200 (or, for a worker, a short while alive)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NotReady(f"{self.name} exited ({self.process.returncode}): {self.tail()}")
            if url is None:
                if time.monotonic() > deadline - timeout + 2 and self._idle():
                    return
            else:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url, timeout=2).status_code == 200:
                        return
            time.sleep(0.2)
        raise NotReady(f"{self.name} not ready after {timeout:g} s: {self.tail()}")

    def _cpu(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _idle(self) -> bool:
        """A process without a readiness URL is ready once it stops burning CPU (its
        imports and start-up are done and it is polling)."""
        before = self._cpu()
        time.sleep(0.5)
        return self._cpu() - before < 0.1

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@contextlib.contextmanager
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    try:
        yield started
    finally:
        for service in reversed(started):
            service.stop()


async def submit_all(
    urls: list[str], key: str | None, tasks: int, concurrency: int
) -> dict[str, Any]:
    """Submit ``tasks`` review tasks round-robin over ``urls``; 429s are retried."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    latencies: list[float] = []
    throttled = failed = 0
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency * 2)

    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:

        async def worker() -> None:
            nonlocal next_index, throttled, failed
            while next_index < tasks:
                index = next_index
                next_index += 1
                url = f"{urls[index % len(urls)]}/v1/tasks"
                while True:
                    t0 = time.perf_counter()
                    response = await client.post(url, json=REVIEW)
                    latencies.append(time.perf_counter() - t0)
                    if response.status_code == 429:
                        throttled += 1
                        await asyncio.sleep(0.2)
                        continue
                    if response.status_code not in (200, 202):
                        failed += 1
                    break

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"latencies": latencies, "throttled": throttled, "rejected": failed}


async def wait_finished(database_url: str, tasks: int, patience: float) -> dict[str, Any]:
    """Poll the database until ``tasks`` tasks have finished (or ``patience`` seconds)."""
    engine = create_engine(database_url)
    finished_states = ("succeeded", "failed", "cancelled")
    deadline = time.monotonic() + patience
    try:
        while True:
            async with engine.connect() as conn:
                finished, last = (
                    await conn.execute(
                        select(func.count(), func.max(TaskRow.finished_at)).where(
                            TaskRow.status.in_(finished_states)
                        )
                    )
                ).one()
                succeeded = (
                    await conn.execute(select(func.count()).where(TaskRow.status == "succeeded"))
                ).scalar_one()
                calls = (
                    await conn.execute(
                        select(func.count(), func.count(distinct(LLMCallRow.task_id))).where(
                            LLMCallRow.task_id.is_not(None)
                        )
                    )
                ).one()
                attempts = (
                    await conn.execute(select(func.count()).select_from(LLMAttemptRow))
                ).scalar_one()
            if finished >= tasks or time.monotonic() > deadline:
                return {
                    "finished": int(finished),
                    "succeeded": int(succeeded),
                    "last_finished": None if last is None else last.timestamp(),
                    "llm_calls": int(calls[0]),
                    "tasks_with_calls": int(calls[1]),
                    "llm_attempts": int(attempts),
                }
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


def bulwark_env(database_url: str, workdir: Path) -> dict[str, str]:
    return child_env(
        {
            "BULWARK_DATABASE_URL": database_url,
            "BULWARK_ADMIN_KEY_FILE": str(workdir / "admin.key"),
            "BULWARK_LOG_LEVEL": "WARNING",
        }
    )


def create_key(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CLI, "keys", "create", "--name", "bench"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise NotReady(f"'bulwark keys create' failed ({done.returncode}): {done.stderr[-800:]}")
    return lines[-1].strip()


def measure(
    params: dict[str, Any], urls: list[str], key: str | None, database_url: str
) -> dict[str, Any]:
    tasks, concurrency = int(params["tasks"]), int(params["concurrency"])
    started = time.time()
    submitted = asyncio.run(submit_all(urls, key, tasks, concurrency))
    done = asyncio.run(wait_finished(database_url, tasks, float(params["timeout"])))
    last = done["last_finished"]
    elapsed = None if last is None else last - started
    lat = latency_summary(submitted["latencies"])
    return {
        "tasks": tasks,
        "finished": done["finished"],
        "succeeded": done["succeeded"],
        "tasks_per_s": round(done["finished"] / elapsed, 2) if elapsed else None,
        "submit_p50_ms": lat.get("p50_ms"),
        "submit_p99_ms": lat.get("p99_ms"),
        "throttled": submitted["throttled"],
        "rejected": submitted["rejected"],
        "calls_per_task": round(done["llm_calls"] / tasks, 2) if tasks else None,
        "attempts_per_task": round(done["llm_attempts"] / tasks, 2) if tasks else None,
    }


class Tasks(Scenario):
    number = 9
    title = "Tasks end to end"
    summary = (
        "review tasks through the REST API with the simulator, until all finished: tasks/s, "
        "and the ratio to a bare FastAPI endpoint doing the same database writes"
    )
    metrics = [  # noqa: RUF012
        Metric("tasks", "tasks"),
        Metric("succeeded", "succeeded"),
        Metric("tasks_per_s", "tasks/s"),
        Metric("ratio_to_bare", "x bare FastAPI"),
        Metric("submit_p50_ms", "submit p50 ms"),
        Metric("submit_p99_ms", "submit p99 ms"),
        Metric("throttled", "429s"),
        Metric("calls_per_task", "LLM calls/task"),
        Metric("attempts_per_task", "attempt rows/task"),
    ]

    def params(self, quick: bool) -> dict[str, Any]:
        if quick:
            return {"tasks": 40, "concurrency": 8, "timeout": 60.0, "worker_concurrency": 4}
        return {"tasks": 300, "concurrency": 16, "timeout": 300.0, "worker_concurrency": 4}

    def run(self, ctx: RunContext) -> dict[str, Any]:
        params = scenario_params(self, ctx)
        out: dict[str, Any] = {"params": params, "variants": {}, "targets": [], "notes": []}
        missing = [
            p for p in ("backend/api/app.py", "backend/worker") if not (REPO_ROOT / p).exists()
        ]
        if missing:
            out["status"] = f"not run: {', '.join(missing)} not found"
            return out
        reasons: list[str] = []
        for variant in (SQLITE,) if ctx.quick else (SQLITE, POSTGRES):
            if variant == POSTGRES and (why := postgres_reachable()) is not None:
                reasons.append(f"{variant}: {why}")
                continue
            ctx.log(f"  scenario 9 [{variant}]")
            workdir = ctx.workdir / f"s9-{'pg' if variant == POSTGRES else 'sqlite'}"
            workdir.mkdir(parents=True, exist_ok=True)
            try:
                bulwark = self._bulwark(variant, params, workdir)
            except NotReady as exc:
                reasons.append(f"{variant}: Bulwark: {exc}"[:1500])
                ctx.log(f"    not run: {reasons[-1]}")
                continue
            metrics: dict[str, dict[str, Any]] = {"bulwark": bulwark}
            errors: dict[str, str] = {}
            try:
                bare = self._bare(variant, params, workdir, bulwark)
                metrics["bare_fastapi"] = bare
                if bulwark.get("tasks_per_s") and bare.get("tasks_per_s"):
                    bulwark["ratio_to_bare"] = round(
                        bulwark["tasks_per_s"] / bare["tasks_per_s"], 3
                    )
                    bare["ratio_to_bare"] = 1.0
            except NotReady as exc:
                errors["bare_fastapi"] = str(exc)[:1500]
            out["variants"][variant] = {"contenders": metrics, "ratios": {}, "errors": errors}
            out["targets"].append(
                Target(
                    "bulwark",
                    variant,
                    "every task succeeds",
                    f"{bulwark['succeeded']} / {bulwark['tasks']}",
                    bulwark["succeeded"] == bulwark["tasks"],
                ).to_dict()
            )
        if reasons:
            out["notes"].extend(f"not run: {r}" for r in reasons)
            if not out["variants"]:
                out["status"] = "not run: " + "; ".join(reasons)
        return out

    def _bulwark(self, variant: str, params: dict[str, Any], workdir: Path) -> dict[str, Any]:
        with contextlib.ExitStack() as stack:
            if variant == SQLITE:
                url = f"sqlite+aiosqlite:///{workdir / 'bulwark.db'}"
            else:
                _, url = stack.enter_context(fleet_database())
            env = bulwark_env(url, workdir)
            env["BULWARK_WORKER_CONCURRENCY"] = str(params["worker_concurrency"])
            if variant == SQLITE:
                upgrade(url)
            key = create_key(env)
            started = stack.enter_context(services())
            urls = []
            api_count = 1 if variant == SQLITE else 2
            for n in range(api_count):
                port = free_port()
                argv = [
                    sys.executable,
                    "-c",
                    CLI,
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ]
                if variant == POSTGRES:
                    argv.append("--no-workers")
                started.append(Service(f"bulwark-api{n}", argv, env, workdir))
                urls.append(f"http://127.0.0.1:{port}")
            if variant == POSTGRES:
                for n in range(2):
                    argv = [sys.executable, "-c", CLI, "worker"]
                    started.append(Service(f"bulwark-worker{n}", argv, env, workdir))
            for service, target in zip(started, [*urls, None, None], strict=False):
                service.wait_ready(f"{target}/readyz" if target else None)
            return measure(params, urls, key, url)
        raise AssertionError("unreachable")

    def _bare(
        self, variant: str, params: dict[str, Any], workdir: Path, bulwark: dict[str, Any]
    ) -> dict[str, Any]:
        calls = round((bulwark.get("calls_per_task") or 0) or 1)
        attempts = max(1, round((bulwark.get("attempts_per_task") or 1) / max(calls, 1)))
        options = [
            "--concurrency",
            str(params["worker_concurrency"]),
            "--calls-per-task",
            str(calls),
            "--attempts-per-call",
            str(attempts),
        ]
        with contextlib.ExitStack() as stack:
            if variant == SQLITE:
                url = f"sqlite+aiosqlite:///{workdir / 'bare.db'}"
                upgrade(url)
            else:
                _, url = stack.enter_context(fleet_database())
            env = child_env()
            started = stack.enter_context(services())
            module = [sys.executable, "-m", "bench.bare_app", "--database-url", url]
            urls = []
            roles = ["both"] if variant == SQLITE else ["api", "api", "worker", "worker"]
            for n, role in enumerate(roles):
                port = free_port()
                argv = [*module, "--role", role, "--port", str(port), *options]
                started.append(Service(f"bare-{role}{n}", argv, env, workdir))
                if role != "worker":
                    urls.append(f"http://127.0.0.1:{port}")
            for service, role, target in zip(started, roles, [*urls, None, None], strict=False):
                service.wait_ready(f"{target}/readyz" if role != "worker" else None)
            return measure(params, urls, None, url)
        raise AssertionError("unreachable")

    def notes(self, params: dict[str, Any]) -> list[str]:
        return [
            "The bare FastAPI app writes, per task, as many llm_calls / llm_attempts rows as "
            "Bulwark's run wrote (rounded), with no auth, validation, agents or gateway.",
            "Bulwark's settings are the defaults (simulator latency 0, 4 tasks at once per "
            "worker); the bare worker also runs 4 at once.",
            "--quick runs the SQLite layout only.",
        ]


SCENARIO = Tasks()
