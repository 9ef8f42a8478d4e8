"""Multiprocess mode with real processes: two Bulwark processes write metrics into one
``PROMETHEUS_MULTIPROC_DIR`` and a third one's ``/metrics`` body reports their sum."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
OPENAI = "openai:gpt-4o-mini"

# One script, three roles. ``holder`` stays alive until its stdin closes; ``passer`` runs
# after it and exits; ``collect`` prints what /metrics would serve.
CHILD = """
import sys
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from backend.core.breaker_state import BreakerEvent, BreakerState as S
from backend.llm.history import AttemptRecord, CallRecord
from backend.metrics import (
    BreakerMetrics, BulwarkMetrics, MeteredHistory, TaskMetrics, install_exit_hook, render_metrics,
)

role = sys.argv[1]
if role == "collect":
    body, _ = render_metrics(CollectorRegistry())
    sys.stdout.write(body.decode())
    raise SystemExit(0)

install_exit_hook()
metrics = BulwarkMetrics(CollectorRegistry())
history, breaker = MeteredHistory(None, metrics), BreakerMetrics(metrics)
tasks = TaskMetrics(metrics)
now = datetime.now(UTC)


def call(*attempts):
    records = [
        AttemptRecord("c", n, "openai:gpt-4o-mini", now, 5.0, outcome, category=category,
                      decision=decision)
        for n, (outcome, category, decision) in enumerate(attempts, 1)
    ]
    history.submit(
        CallRecord("c", "reviewer/review", now, now, 2000.0, "success", len(records),
                   agent="reviewer", route="review", target="openai:gpt-4o-mini"),
        records,
    )


def transition(source, to):
    breaker(BreakerEvent("openai:gpt-4o-mini", source, to, "test", "system", now))


if role == "holder":
    call(("failure", "server_error", "retry"), ("success", None, "succeed"))
    transition(S.CLOSED, S.OPEN)
    tasks.set_queued(4)
    print("ready", flush=True)
    sys.stdin.read()
else:
    for _ in range(3):
        call(("success", None, "succeed"))
    transition(S.OPEN, S.HALF_OPEN)
    transition(S.HALF_OPEN, S.CLOSED)
    tasks.set_queued(7)
    tasks.task_finished("review", "succeeded", 2.0)
"""


def _run(role: str, directory: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, role],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str], stdin: str = "") -> str:
    out, err = process.communicate(stdin, timeout=60)
    assert process.returncode == 0, err
    return out


def _collect(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = _finish(_run("collect", directory))
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def _key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


@pytest.mark.slow
def test_metrics_from_several_processes_are_summed(tmp_path: Path) -> None:
    holder = _run("holder", tmp_path)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "ready"
    _finish(_run("passer", tmp_path))

    values = _collect(tmp_path)
    who = {"target": OPENAI, "agent": "reviewer"}
    attempts = "bulwark_llm_attempts_total"
    assert values[_key(attempts, **who, outcome="success", category="none")] == 4
    assert values[_key(attempts, **who, outcome="failure", category="server_error")] == 1
    assert values[_key("bulwark_llm_retries_total", **who)] == 1
    assert values[_key("bulwark_llm_call_duration_seconds_count", **who)] == 4
    assert values[_key("bulwark_llm_call_duration_seconds_sum", **who)] == 8.0
    transitions = "bulwark_breaker_transitions_total"
    for state in ("open", "half_open", "closed"):
        assert values[_key(transitions, target=OPENAI, to_state=state)] == 1
    assert values[_key("bulwark_tasks_total", type="review", status="succeeded")] == 1
    # The breaker gauge is the latest transition of any process (the passer closed it after
    # the holder opened it): 0, where "max" would still say open.
    assert values[_key("bulwark_breaker_state", target=OPENAI)] == 0
    # The queue length is the latest value of a live process: the passer's 7 went with it.
    assert values[_key("bulwark_tasks_queued")] == 4

    _finish(holder)
    values = _collect(tmp_path)
    assert _key("bulwark_tasks_queued") not in values
    assert values[_key("bulwark_breaker_state", target=OPENAI)] == 0
    assert values[_key(attempts, **who, outcome="success", category="none")] == 4
