"""The parent side: fresh fake servers per contender, one process per contender (or a thread,
in process), rounds of blocks, then the scenario's summary."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from bench.case import MARK, CaseServer
from bench.common import REPO_ROOT, child_env, machine_info
from bench.contenders.base import ContenderSpec
from bench.scenarios.base import Scenario, Target, with_ratios
from bench.servers import FakeServer


class CaseFailed(RuntimeError):
    """A contender's case raised, or its process died."""


@dataclass
class RunContext:
    quick: bool = False
    contenders: list[str] = field(default_factory=list)
    in_process: bool = False
    """Run each case in a thread of this process instead of a child process (tests)."""
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bulwark-bench-")))
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True)
    overrides: dict[str, Any] = field(default_factory=dict)
    """Scenario parameters forced from outside (e.g. a smoke test's tiny sizes)."""
    reuse: bool = True
    """Reuse a contender's process for its next case (every case still builds a fresh
    contender against fresh servers); scenarios marked ``fresh_process`` always get a new one."""
    pool: HostPool = field(init=False)

    def __post_init__(self) -> None:
        self.pool = HostPool(self, reuse=self.reuse)

    def close(self) -> None:
        self.pool.close()


class Handle(Protocol):
    name: str

    def begin(self, setup: dict[str, Any]) -> None:
        """Start a case (its ``ready`` reply is the next ``receive``)."""

    def receive(self) -> dict[str, Any]: ...

    def send(self, message: dict[str, Any]) -> None: ...

    def alive(self) -> bool: ...

    def close(self) -> None: ...


class ProcessHandle:
    """``python -m bench.case`` in a child process, serving cases one after another; its
    stderr goes to a log file."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[str] = log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.case"],
            cwd=REPO_ROOT,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )

    def begin(self, setup: dict[str, Any]) -> None:
        self.send(setup)

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            if not line:
                self.process.wait(10)
                tail = self.log_path.read_text()[-3000:]
                raise CaseFailed(
                    f"{self.name}: process exited ({self.process.returncode}); log:\n{tail}"
                )
            if line.startswith(MARK):
                return _unwrap(self.name, json.loads(line[len(MARK) :]))

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


class ThreadHandle:
    """The same cases in a thread of this process, with an event loop of its own."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"case-{name}")
        self.thread.start()
        self.server: CaseServer | None = None
        self._pending: concurrent.futures.Future[dict[str, Any]] | None = None

    def _submit(self, coro: Any) -> concurrent.futures.Future[dict[str, Any]]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def begin(self, setup: dict[str, Any]) -> None:
        self.server = CaseServer(setup)
        self._pending = self._submit(self.server.start())

    def send(self, message: dict[str, Any]) -> None:
        assert self.server is not None
        self._pending = self._submit(self.server.handle(message))

    def receive(self) -> dict[str, Any]:
        assert self._pending is not None
        try:
            return self._pending.result()
        except Exception:
            raise CaseFailed(f"{self.name}: {traceback.format_exc(limit=20)}") from None

    def alive(self) -> bool:
        return self.thread.is_alive()

    def close(self) -> None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                self._submit(self.server.aclose()).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


class HostPool:
    """Contender hosts (processes, or threads in process). With ``reuse`` a host goes back
    to the pool after its case and serves the contender's next case; otherwise every case
    gets a fresh host."""

    def __init__(self, ctx: RunContext, *, reuse: bool) -> None:
        self.ctx = ctx
        self.reuse = reuse
        self._idle: dict[str, list[Handle]] = {}
        self._count = 0

    def acquire(self, name: str, *, fresh: bool = False) -> Handle:
        idle = self._idle.get(name, [])
        while idle and not fresh:
            handle = idle.pop()
            if handle.alive():
                return handle
            handle.close()
        self._count += 1
        if self.ctx.in_process:
            return ThreadHandle(name)
        log_dir = self.ctx.workdir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        return ProcessHandle(name, log_dir / f"{name}-{self._count}.log")

    def release(self, handle: Handle, *, healthy: bool = True) -> None:
        if self.reuse and healthy and handle.alive():
            self._idle.setdefault(handle.name, []).append(handle)
        else:
            with contextlib.suppress(Exception):
                handle.close()

    def close(self) -> None:
        for handles in self._idle.values():
            for handle in handles:
                with contextlib.suppress(Exception):
                    handle.close()
        self._idle.clear()


def _unwrap(name: str, message: dict[str, Any]) -> dict[str, Any]:
    if "error" in message:
        raise CaseFailed(f"{name}: {message['error']}")
    result: dict[str, Any] = message["result"]
    return result


@dataclass
class _Entry:
    name: str
    servers: list[FakeServer]
    handle: Handle | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def scenario_params(scenario: Scenario, ctx: RunContext) -> dict[str, Any]:
    return {**scenario.params(ctx.quick), **ctx.overrides}


def run_standard(scenario: Scenario, ctx: RunContext) -> dict[str, Any]:
    """Every variant: every contender on fresh servers, rounds of blocks, then the summary.
    Blocks run one contender at a time, except in ``--quick`` runs of scenarios that mostly
    wait (``parallel_in_quick``), whose contenders then run side by side."""
    params = scenario_params(scenario, ctx)
    parallel = ctx.quick and scenario.parallel_in_quick
    out: dict[str, Any] = {"params": params, "variants": {}, "targets": []}
    for variant in scenario.variants(params):
        names = scenario.contenders(ctx.contenders, variant)
        ctx.log(f"  scenario {scenario.number} [{variant}]: {', '.join(names)}")
        entries = _start(scenario, ctx, params, variant, names)
        try:
            for index in range(scenario.rounds(params)):
                _steps(entries, {"op": "block", "index": index}, "blocks", parallel)
            _steps(entries, {"op": "finish"}, "final", parallel)
        finally:
            for entry in entries:
                _close(ctx, entry)
        out["variants"][variant] = summarize(scenario, params, variant, entries)
        out["targets"].extend(out["variants"][variant].pop("targets"))
    return out


def _start(
    scenario: Scenario, ctx: RunContext, params: dict[str, Any], variant: str, names: list[str]
) -> list[_Entry]:
    entries: list[_Entry] = []
    for name in names:
        entry = _Entry(name, [])
        entries.append(entry)
        try:
            primary = FakeServer().start()
            entry.servers.append(primary)
            fallback = None
            if scenario.uses_fallback(variant):
                fallback = FakeServer().start()
                entry.servers.append(fallback)
            workdir = ctx.workdir / f"s{scenario.number}-{_slug(variant)}-{name}"
            workdir.mkdir(parents=True, exist_ok=True)
            base = ContenderSpec(
                primary_url=primary.openai_base_url,
                fallback_url=fallback.openai_base_url if fallback else None,
                workdir=str(workdir),
            )
            setup = {
                "scenario": scenario.number,
                "contender": name,
                "variant": variant,
                "params": params,
                "spec": scenario.spec(base, params, variant).to_dict(),
                "primary": primary.base_url,
                "fallback": fallback.base_url if fallback else None,
            }
            entry.handle = ctx.pool.acquire(name, fresh=scenario.fresh_process)
            entry.handle.begin(setup)
        except Exception as exc:
            entry.error = f"{type(exc).__name__}: {exc}"
    for entry in entries:  # the cases start side by side; wait until each is ready
        if entry.handle is not None and entry.error is None:
            try:
                entry.handle.receive()
            except CaseFailed as exc:
                entry.error = str(exc)
                ctx.log(f"    {entry.name} failed to start: {str(exc)[-1500:]}")
    return entries


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text)[:40]


def _steps(entries: list[_Entry], message: dict[str, Any], into: str, parallel: bool) -> None:
    """Send ``message`` to every live entry (all at once when ``parallel``)."""
    live = [e for e in entries if e.error is None and e.handle is not None]
    if parallel:
        sent = [entry for entry in live if _send(entry, message)]
        for entry in sent:
            _receive(entry, into)
        return
    for entry in live:
        if _send(entry, message):
            _receive(entry, into)


def _failed(entry: _Entry, exc: Exception) -> None:
    entry.error = str(exc)
    print(f"    {entry.name} failed: {str(exc)[-1500:]}", file=sys.stderr, flush=True)


def _send(entry: _Entry, message: dict[str, Any]) -> bool:
    assert entry.handle is not None
    try:
        entry.handle.send(message)
    except (CaseFailed, OSError, ValueError) as exc:
        _failed(entry, exc)
        return False
    return True


def _receive(entry: _Entry, into: str) -> None:
    assert entry.handle is not None
    try:
        reply = entry.handle.receive()
    except (CaseFailed, OSError, ValueError) as exc:
        _failed(entry, exc)
        return
    if into == "blocks":
        entry.blocks.append(reply)
    else:
        entry.final = reply


def _close(ctx: RunContext, entry: _Entry) -> None:
    if entry.handle is not None:
        ctx.pool.release(entry.handle, healthy=entry.error is None)
    for server in entry.servers:
        server.stop()


def summarize(
    scenario: Scenario, params: dict[str, Any], variant: str, entries: list[_Entry]
) -> dict[str, Any]:
    metrics: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for entry in entries:
        if entry.error is not None:
            errors[entry.name] = entry.error[-2000:]
            continue
        metrics[entry.name] = scenario.measure(entry.name, entry.blocks, entry.final, params)
    ratios = with_ratios(metrics, scenario.metrics)
    targets: list[Target] = []
    for name, values in metrics.items():
        targets.extend(scenario.targets_for(name, variant, values, ratios[name], params))
    return {
        "contenders": metrics,
        "ratios": ratios,
        "errors": errors,
        "targets": [t.to_dict() for t in targets],
    }


def run_scenario(scenario: Scenario, ctx: RunContext) -> dict[str, Any]:
    """One scenario, never raising: a scenario that breaks is reported as such."""
    started = time.monotonic()
    load_before = machine_info()["load_average"]
    runner = getattr(scenario, "run", None)
    try:
        result = runner(ctx) if runner is not None else run_standard(scenario, ctx)
    except Exception as exc:
        ctx.log(traceback.format_exc())
        result = {"status": f"error: {type(exc).__name__}: {exc}", "variants": {}, "targets": []}
    result.setdefault("status", "ok")
    result.setdefault("notes", [])
    result["notes"] = [*scenario.notes(result.get("params", {})), *result["notes"]]
    result["number"] = scenario.number
    result["title"] = scenario.title
    result["summary"] = scenario.summary
    result["seconds"] = round(time.monotonic() - started, 1)
    result["load_average"] = {"before": load_before, "after": machine_info()["load_average"]}
    return result


__all__ = ["CaseFailed", "RunContext", "run_scenario", "run_standard", "scenario_params"]
