"""Worker processes of a fleet (driven by ``test_worker_processes``).

Usage::

    python -m tests.e2e.worker_process WORKER_ID RUNS_FILE     # one worker
    python -m tests.e2e.worker_process --spawner               # a fork server

A worker runs :func:`backend.worker.run_worker` with ``Settings()`` from the environment
(``BULWARK_DATABASE_URL``, ``BULWARK_SIM_LATENCY_MS``, ``BULWARK_WORKER_*``, ...), its own
signal handlers (SIGTERM drains), and one agent: ``steps`` makes ``steps`` simulator calls in
a row and appends ``TASK_ID WORKER_ID`` to RUNS_FILE each time it starts, so a test can count
every run of every task. It prints ``{"ready": WORKER_ID}`` once built and
``{"stopped": WORKER_ID}`` after a clean stop.

Importing Bulwark costs seconds of CPU per process, so the tests start workers through a
fork server: it imports everything once (no threads, no event loop), then forks a worker per
command, each a real process of its own that can be killed and signalled. Commands and
answers are JSON lines on its stdin and stdout: ``{"do": "spawn", "id", "runs", "env", "cwd",
"out", "log"}`` → ``{"pid"}`` (the worker's stdout and stderr go to the files ``out`` and
``log``); ``{"do": "wait", "id", "within"}`` → ``{"status"}``: the exit code (``-N`` for
signal N), or ``null`` if the worker is still running after ``within`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from agents.base import BaseAgent
from agents.context import AgentContext
from agents.registry import AgentRegistry
from backend.config import Settings
from backend.worker import Worker, run_worker


class StepsInput(BaseModel):
    text: str
    steps: int = 1


class StepsOutput(BaseModel):
    answers: list[str]
    worker: str


class StepsAgent(BaseAgent[StepsInput, StepsOutput]):
    name = "stepper"
    task_type = "steps"
    Input = StepsInput
    Output = StepsOutput
    runs_file: ClassVar[Path]
    worker_id: ClassVar[str]

    async def run(self, input: StepsInput, ctx: AgentContext) -> StepsOutput:
        with self.runs_file.open("a") as runs:
            runs.write(f"{ctx.task_id} {self.worker_id}\n")
        answers = []
        for step in range(input.steps):
            result = await self.ask([{"role": "user", "content": f"{input.text} #{step}"}])
            answers.append(result.text[:40])
        return StepsOutput(answers=answers, worker=self.worker_id)


def _announce(worker: Worker) -> None:
    print(json.dumps({"ready": worker.id}), flush=True)


async def main(worker_id: str, runs_file: str) -> None:
    StepsAgent.runs_file = Path(runs_file)
    StepsAgent.worker_id = worker_id
    await run_worker(
        Settings(),
        registry=AgentRegistry([StepsAgent]),
        worker_id=worker_id,
        install_signal_handlers=True,
        on_start=_announce,
    )
    print(json.dumps({"stopped": worker_id}), flush=True)


def worker(worker_id: str, runs_file: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    asyncio.run(main(worker_id, runs_file))


# -- the fork server ------------------------------------------------------------------------


def _reply(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


def _child(command: dict[str, Any]) -> None:
    """In the forked process: become the worker, then leave without the parent's clean-up."""
    code = 1
    try:
        os.chdir(command["cwd"])
        os.environ.clear()
        os.environ.update(command["env"])
        for fd, path, flags in (
            (0, os.devnull, os.O_RDONLY),
            (1, command["out"], os.O_WRONLY | os.O_CREAT | os.O_APPEND),
            (2, command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND),
        ):
            os.dup2(os.open(path, flags, 0o644), fd)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        worker(command["id"], command["runs"])
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _wait(pid: int, within: float) -> int | None:
    give_up = time.monotonic() + within
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= give_up:
            return None
        time.sleep(0.02)


def spawner() -> None:
    """Serve commands until stdin closes; then kill and reap the workers still running."""
    children: dict[str, int] = {}
    statuses: dict[str, int] = {}
    _reply({"spawner": "ready"})
    for line in sys.stdin:
        command = json.loads(line)
        if command["do"] == "spawn":
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(command)
            children[command["id"]] = pid
            statuses.pop(command["id"], None)  # an id may be used again once reaped
            _reply({"pid": pid})
        else:
            name = command["id"]
            if name not in statuses:
                status = _wait(children[name], command["within"])
                if status is not None:
                    statuses[name] = status
            _reply({"status": statuses.get(name)})
    for name, pid in children.items():
        if name not in statuses:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


if __name__ == "__main__":
    if sys.argv[1:] == ["--spawner"]:
        spawner()
    else:
        worker(sys.argv[1], sys.argv[2])
