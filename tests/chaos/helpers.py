"""Processes the chaos tests start: ``bulwark serve`` on a free port, and a private
PostgreSQL cluster (initdb + pg_ctl as the ``postgres`` user, its own port and data dir)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
BULWARK = Path(sys.executable).parent / "bulwark"
PG_BIN = next(
    (
        Path(d)
        for d in ("/usr/local/bin", "/usr/lib/postgresql/15/bin")
        if Path(d, "pg_ctl").exists()
    ),
    Path("/usr/lib/postgresql/15/bin"),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def base_env(database_url: str, **settings: str) -> dict[str, str]:
    pythonpath = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(pythonpath),
        "BULWARK_DATABASE_URL": database_url,
        "BULWARK_WORKER_POLL_SECONDS": "0.1",
        "BULWARK_WORKER_GRACE_SECONDS": "2",
        "BULWARK_HISTORY_FLUSH_SECONDS": "0.1",
    }
    env.update({f"BULWARK_{name.upper()}": value for name, value in settings.items()})
    return env


class Server:
    """``bulwark serve`` as a real process in ``root``; stdout and stderr go to files."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = root / f"serve-{self.port}.out"
        self.err = root / f"serve-{self.port}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen(
                [str(BULWARK), "serve", "--port", str(self.port)],
                cwd=root,
                env=env,
                stdout=out,
                stderr=err,
                text=True,
            )

    def wait_ready(self, within: float = 120.0) -> None:
        give_up = time.monotonic() + within
        while time.monotonic() < give_up:
            assert self.process.poll() is None, self.err.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"bulwark serve was not ready in {within} s")

    @property
    def admin_key(self) -> str:
        return (self.root / ".bulwark" / "admin.key").read_text().strip()

    def stop(self) -> int:
        """SIGINT, then SIGKILL if it does not stop in time; always reaped."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


class PrivatePostgres:
    """A PostgreSQL cluster of its own, run by the ``postgres`` user (PostgreSQL refuses
    root), in a directory under /tmp owned by that user, listening on 127.0.0.1:``port``."""

    def __init__(self) -> None:
        self.user = pwd.getpwnam("postgres")
        self.root = Path(tempfile.mkdtemp(prefix="bulwark-chaos-pg-"))
        os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout}\n{done.stderr}"

    def init(self) -> None:
        self._run(
            str(PG_BIN / "initdb"),
            "-D", str(self.data),
            "-U", "postgres",
            "--auth=trust",
            "--no-sync",
            "--encoding=UTF8",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
            " -c full_page_writes=off -c synchronous_commit=off"
        )
        self._run(
            str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "60",
            "-D", str(self.data), "-l", str(self.log), "-o", options,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(
            str(PG_BIN / "pg_ctl"), "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.data)
        )

    def destroy(self) -> None:
        """Stop it (immediately) if it runs, and remove its files."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            try:
                self.stop("immediate")
            except AssertionError:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
