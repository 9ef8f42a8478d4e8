"""The quickstart, as a user runs it: ``bulwark serve`` as a real process on a free port
(SQLite, the offline simulator, embedded workers), ``bulwark keys create``, then ``bulwark
review`` and ``bulwark code`` against it; and ``bulwark review`` without a server, run on the
local database in-process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

BULWARK = Path(sys.executable).parent / "bulwark"
REPO = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 120.0

SAMPLE = """\
import json
import os


def read(path):
    f = open(path)
    return f.read()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Workspace:
    """A directory with its own database, where ``bulwark`` runs as a user would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        pythonpath = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        self.env = {
            **os.environ,
            # This checkout's code, whatever the installed entry point was built from.
            "PYTHONPATH": os.pathsep.join(pythonpath),
            "BULWARK_DATABASE_URL": f"sqlite+aiosqlite:///{root / 'bulwark.db'}",
            "BULWARK_WORKER_POLL_SECONDS": "0.1",
            "BULWARK_WORKER_GRACE_SECONDS": "2",
        }
        self.sample = root / "sample.py"
        self.sample.write_text(SAMPLE)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BULWARK), *args],
            cwd=self.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def ok(self, *args: str, **env: str) -> str:
        done = self.run(*args, **env)
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        return done.stdout


class Server:
    def __init__(self, workspace: Workspace, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = workspace.root / f"serve-{self.port}.out"
        self.err = workspace.root / f"serve-{self.port}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen(
                [str(BULWARK), "serve", "--port", str(self.port), *args],
                cwd=workspace.root,
                env=workspace.env,
                stdout=out,
                stderr=err,
                text=True,
            )

    def wait_ready(self) -> float:
        started = time.monotonic()
        while time.monotonic() - started < STARTUP_SECONDS:
            assert self.process.poll() is None, self.err.read_text()
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"bulwark serve was not ready in {STARTUP_SECONDS} s")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    @property
    def output(self) -> str:
        return self.out.read_text()


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


@pytest.fixture
def server(workspace: Workspace) -> Iterator[Server]:
    server = Server(workspace)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_quickstart_serve_create_a_key_and_review_a_file(
    workspace: Workspace, server: Server
) -> None:
    first_start = server.output
    assert "Created the first admin API key" in first_start
    key_file = workspace.root / ".bulwark" / "admin.key"
    admin_key = key_file.read_text().strip()
    assert admin_key in first_start
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.parent.stat().st_mode & 0o777 == 0o700

    created = workspace.ok("keys", "create", "--name", "ci")
    key = created.strip().splitlines()[-1]
    assert key.startswith("bwk_")
    assert " " not in key

    review = workspace.run("review", str(workspace.sample), "--server", server.url, "--key", key)
    assert review.returncode == 0, review.stderr
    assert "Traceback" not in review.stderr
    assert "Review of" in review.stdout
    assert "/100" in review.stdout
    assert "Findings:" in review.stdout
    assert "succeeded" in review.stderr  # progress goes to stderr

    by_env = workspace.run("review", "sample.py", "--server", server.url, BULWARK_API_KEY=key)
    assert by_env.returncode == 0, by_env.stderr
    by_key_file = workspace.run("review", "sample.py", "--server", server.url)  # admin.key
    assert by_key_file.returncode == 0, by_key_file.stderr

    code = workspace.run("code", "Write add(a, b).", "--server", server.url, "--key", key)
    assert code.returncode == 0, code.stderr
    assert "```python" in code.stdout
    as_json = workspace.run("code", "Write slugify(title).", "--server", server.url, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["status"] == "succeeded"

    wrong_key = workspace.run("review", "sample.py", "--server", server.url, "--key", "bwk_x")
    assert wrong_key.returncode == 3
    assert "unauthorized" in wrong_key.stderr
    unreachable = workspace.run(
        "review", "sample.py", "--server", f"http://127.0.0.1:{free_port()}", "--key", key
    )
    assert unreachable.returncode == 3
    assert "cannot reach" in unreachable.stderr

    assert server.stop() == 0
    assert "Traceback" not in server.err.read_text()


def test_review_without_a_server_runs_on_the_local_database(workspace: Workspace) -> None:
    done = workspace.run("review", "sample.py", "--language", "python")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "Review of sample.py" in done.stdout
    assert "/100" in done.stdout
    assert (workspace.root / "bulwark.db").exists()

    missing = workspace.run("review", "no-such-file.py")
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
