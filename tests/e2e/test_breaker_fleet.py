"""Two OS processes share breakers through one PostgreSQL database."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.db.migrate import upgrade

REPO = Path(__file__).resolve().parents[2]


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.breaker_fleet_worker", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(process: subprocess.Popen[str]) -> dict[str, float]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def fleet_db(postgres_url: str) -> str:
    upgrade(postgres_url)
    return postgres_url


def test_failures_in_one_process_open_the_breaker_for_the_other_within_a_second(
    fleet_db: str,
) -> None:
    watcher = _start("watch", fleet_db, "openai:fleet-model")
    assert watcher.stdout is not None
    assert json.loads(watcher.stdout.readline())["ready"]
    opener = _start("open", fleet_db, "openai:fleet-model")
    opened_at = _result(opener)["opened_at"]
    refused_at = _result(watcher)["refused_at"]
    assert refused_at > 0, "the watching process never saw the breaker open"
    assert refused_at - opened_at <= 1.0


def test_exactly_one_probe_reaches_the_function_across_two_processes(
    fleet_db: str, tmp_path: Path
) -> None:
    key = "anthropic:claude/probe-race"
    opened_at = _result(_start("open", fleet_db, key))["opened_at"]
    start_at = opened_at + 2.5  # past the 1.5 s open time, with both processes started
    out = tmp_path / "reached.txt"
    racers = [_start("probe", fleet_db, key, str(start_at), str(out)) for _ in range(2)]
    results = [_result(racer) for racer in racers]
    assert time.time() >= start_at
    assert out.read_text().count("reached") == 1
    assert sum(r["succeeded"] for r in results) == 1
    assert sum(r["refused"] for r in results) == 19
