"""The ``bulwark`` command, run as a real process: ``db upgrade`` and the operator's
``breakers list|reset|open``, on a SQLite file."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BULWARK = Path(sys.executable).parent / "bulwark"
KEY = "ollama:library/llama3:8b"  # breaker keys contain ':' and may contain '/'


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.cwd = tmp_path
        self.db = tmp_path / "bulwark.db"
        self.env = {**os.environ, "BULWARK_DATABASE_URL": f"sqlite+aiosqlite:///{self.db}"}

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BULWARK), *args],
            cwd=self.cwd,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        return done.stdout

    def query(self, sql: str) -> list[tuple[object, ...]]:
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def migrated(cli: Cli) -> Cli:
    cli.ok("db", "upgrade")
    return cli


def row_of(listing: str, key: str) -> list[str]:
    [row] = [line.split() for line in listing.splitlines() if line.startswith(key + " ")]
    return row


def test_the_console_script_is_installed() -> None:
    assert BULWARK.exists(), f"{BULWARK} is missing: run `make install`"


def test_db_upgrade_creates_the_tables(cli: Cli) -> None:
    assert "up to date" in cli.ok("db", "upgrade")
    tables = {name for (name,) in cli.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "alembic_version",
        "circuit_breakers",
        "breaker_events",
        "llm_calls",
        "llm_attempts",
    } <= tables
    assert "up to date" in cli.ok("db", "upgrade")  # idempotent


def test_open_list_reset(migrated: Cli) -> None:
    header = migrated.ok("breakers", "list")
    assert header.split() == ["KEY", "STATE", "FAILURES", "OPENED", "RETRY", "AT", "LAST", "ERROR"]

    assert migrated.ok("breakers", "open", KEY).strip() == f"{KEY}: open"
    row = row_of(migrated.ok("breakers", "list"), KEY)
    assert row[1:3] == ["open", "0"]
    assert row[-2:] == ["until", "reset"]  # forced open: no retry time

    assert migrated.ok("breakers", "reset", KEY).strip() == f"{KEY}: closed"
    row = row_of(migrated.ok("breakers", "list"), KEY)
    assert row[1:] == ["closed", "0", "-", "-"]

    assert migrated.query("SELECT state, forced_open FROM circuit_breakers") == [("closed", 0)]


def test_operator_actions_are_recorded_with_their_actor(migrated: Cli) -> None:
    migrated.ok("breakers", "open", KEY)
    migrated.ok("breakers", "reset", KEY, "--actor", "alice")
    events = migrated.query(
        "SELECT key, from_state, to_state, reason, actor FROM breaker_events ORDER BY id"
    )
    assert events == [
        (KEY, "closed", "open", "forced_open", "cli"),
        (KEY, "open", "closed", "reset", "alice"),
    ]


def test_invalid_configuration_exits_2_with_a_message(migrated: Cli) -> None:
    done = migrated.run("breakers", "list", BULWARK_ROUTES="{bad")
    assert done.returncode == 2
    assert "bulwark: invalid configuration" in done.stderr
    assert "BULWARK_ROUTES is not valid JSON" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_bad_target_in_routes_exits_2(migrated: Cli) -> None:
    done = migrated.run("db", "upgrade", BULWARK_ROUTES='{"review": ["gpt-4o-mini"]}')
    assert done.returncode == 2
    assert "is not of the form provider:model" in done.stderr
    assert "Traceback" not in done.stderr


def test_usage_errors_exit_2(cli: Cli) -> None:
    done = cli.run("breakers", "open")  # no key
    assert done.returncode == 2
    assert "usage: bulwark" in done.stderr
    assert "Traceback" not in done.stderr


def test_actions_on_a_database_that_is_not_migrated_fail_loudly(cli: Cli) -> None:
    opened = cli.run("breakers", "open", "openai:gpt-4o-mini")
    assert opened.returncode == 3
    assert "bulwark db upgrade" in opened.stderr
    assert "Traceback" not in opened.stderr
    listed = cli.run("breakers", "list")
    assert listed.returncode == 3
