"""The fake provider server as a separate process (so it never shares the GIL with the
contender being measured), programmed over its HTTP control endpoints."""

from __future__ import annotations

import subprocess
import sys
import time
from types import TracebackType
from typing import Any, Self

from bench.common import REPO_ROOT, child_env
from tests.fakes.remote import ProviderServerControl


class FakeServer(ProviderServerControl):
    """``python -m tests.fakes.provider_server --port 0`` in a child process."""

    def __init__(self, *, timeout: float = 30.0) -> None:
        super().__init__("http://127.0.0.1:0", timeout=timeout)
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> Self:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.provider_server", "--port", "0"],
            cwd=REPO_ROOT,
            env=child_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"the fake provider process did not print its port: {line!r}")
        self.port = int(line)
        self.base_url = f"http://127.0.0.1:{self.port}"
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def request_times(control: ProviderServerControl) -> list[tuple[float, str]]:
    """``(received_at, behaviour kind)`` of every provider request the server received, in
    order (``received_at`` is the server's ``time.time()``)."""
    stats: dict[str, Any] = control.stats()
    out: list[tuple[float, str]] = []
    for request in stats.get("requests", []):
        if request.get("provider") is None:
            continue
        behaviour = request.get("behaviour") or {}
        out.append((float(request["received_at"]), str(behaviour.get("kind", "?"))))
    return out


def total_requests(control: ProviderServerControl) -> int:
    """Provider requests received so far (control calls are not counted)."""
    stats: dict[str, Any] = control.stats(with_requests=False)
    by_provider: dict[str, int] = stats.get("by_provider", {})
    return sum(n for name, n in by_provider.items() if name != "other")


def wall_clock() -> float:
    """The clock the fake server stamps requests with."""
    return time.time()


__all__ = ["FakeServer", "request_times", "total_requests", "wall_clock"]
