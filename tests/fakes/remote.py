"""Program a fake provider server in another process over its ``/_control/`` endpoints.

    with ProviderServerProcess() as server:          # python -m tests.fakes.provider_server
        server.script(rate_limit(retry_after=1), reply("ok"), provider="openai")
        ... point any process at server.openai_base_url / server.anthropic_base_url ...
        assert server.stats()["total"] == 2

``ProviderServerControl(base_url)`` does the same for a server started some other way.
Standard library only (``urllib``), so it also works from processes without the SDKs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.fakes.behaviours import Behaviour, flatten
from tests.fakes.wire import Provider

REPO_ROOT = Path(__file__).resolve().parents[2]


class ProviderServerControl:
    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    def _call(self, method: str, action: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.base_url}/_control/{action}",
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def script(
        self, *behaviours: Behaviour | Iterable[Behaviour], provider: Provider | None = None
    ) -> int:
        items = [b.to_dict() for b in flatten(behaviours)]
        queued: int = self._call("POST", "script", {"behaviours": items, "provider": provider})[
            "queued"
        ]
        return queued

    def set_default(self, behaviour: Behaviour | None, provider: Provider | None = None) -> None:
        payload = {"behaviour": behaviour.to_dict() if behaviour else None, "provider": provider}
        self._call("POST", "default", payload)

    def set_latency(self, ms: float) -> None:
        self._call("POST", "latency", {"ms": ms})

    def reset(self) -> None:
        self._call("POST", "reset", {})

    def stats(self, *, with_requests: bool = True) -> dict[str, Any]:
        stats: dict[str, Any] = self._call(
            "GET", "stats" + ("" if with_requests else "?requests=0")
        )
        return stats


class ProviderServerProcess(ProviderServerControl):
    """``python -m tests.fakes.provider_server`` in a child process, stopped on exit."""

    def __init__(
        self, port: int = 0, *, timeout: float = 5.0, env: Mapping[str, str] | None = None
    ) -> None:
        super().__init__("http://127.0.0.1:0", timeout=timeout)
        self._port_arg = port
        self._env = dict(env) if env is not None else None
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> Self:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.provider_server", "--port", str(self._port_arg)],
            cwd=REPO_ROOT,
            env=self._env,
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
