"""What every benchmark process shares: the common settings, statistics, the network guard,
resource limits, memory readings and a description of the machine."""

from __future__ import annotations

import contextlib
import importlib.metadata
import ipaddress
import math
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

MODEL = "gpt-4o-mini"
MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "Review this: print('hi')"}]
API_KEY = "sk-bench-0000000000000000"


@dataclass(frozen=True)
class Common:
    """The settings every contender gets (the issue's common settings)."""

    max_retries: int = 3
    initial_wait: float = 0.1
    multiplier: float = 2.0
    max_wait: float = 10.0
    attempt_timeout: float = 30.0
    breaker_threshold: int = 5
    open_seconds: float = 60.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


COMMON = Common()

# --- statistics -----------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float | int]:
    """p50/p90/p99/max/mean in milliseconds, and the sample count."""
    ms = [s * 1000 for s in seconds]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(sum(ms) / len(ms), 3),
    }


def ratio(value: Any, baseline: Any) -> float | None:
    """``value / baseline`` rounded, or None when either is missing or the baseline is 0."""
    if not isinstance(value, int | float) or not isinstance(baseline, int | float):
        return None
    if isinstance(value, bool) or isinstance(baseline, bool):
        return None
    if baseline == 0 or math.isnan(baseline) or math.isnan(value):
        return None
    return round(value / baseline, 3)


# --- the network guard ----------------------------------------------------------------------

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class NetworkRefused(RuntimeError):
    """A benchmark process tried to reach something other than this machine's loopback."""


_guard_installed = False


def guard_network() -> None:
    """Refuse every connection (and name lookup) outside 127.0.0.0/8 and ::1 in this process,
    through an audit hook (it cannot be removed once added). Unix sockets are allowed."""
    global _guard_installed
    if _guard_installed:
        return

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.connect":
            sock, address = args[0], args[1]
            if getattr(sock, "family", None) == socket.AF_UNIX:
                return
            host = address[0] if isinstance(address, tuple) and address else address
            if not _is_loopback(host):
                raise NetworkRefused(f"benchmark network guard: connection to {address!r} refused")
        elif event == "socket.getaddrinfo":
            host = args[0]
            if host is not None and not _is_loopback(host):
                raise NetworkRefused(f"benchmark network guard: lookup of {host!r} refused")

    sys.addaudithook(hook)
    _guard_installed = True


# --- process resources ----------------------------------------------------------------------


def raise_fd_limit(wanted: int = 65_536) -> int:
    """Raise this process's open-file limit as far as allowed (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes() -> int:
    """This process's resident set size (``VmRSS`` in /proc/self/status)."""
    with Path("/proc/self/status").open() as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for benchmark child processes: no provider or Bulwark settings leaking
    in from the caller's shell, byte-code cached outside the repository (so a child does not
    recompile every module it imports), LiteLLM kept off the internet."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BULWARK_", "OPENAI_", "ANTHROPIC_", "LITELLM_"))
        and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.setdefault("PYTHONPYCACHEPREFIX", str(Path.home() / ".cache" / "bulwark-bench" / "pyc"))
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["LITELLM_TELEMETRY"] = "False"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


# --- the machine ----------------------------------------------------------------------------

PACKAGES = (
    "openai",
    "httpx",
    "httpx2",
    "tenacity",
    "pybreaker",
    "litellm",
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "fastapi",
    "uvicorn",
    "pydantic",
)


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def git_revision() -> str | None:
    """The repository's commit (with ``+dirty`` when the work tree has changes), if known."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine_info() -> dict[str, Any]:
    return {
        "commit": git_revision(),
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


__all__ = [
    "API_KEY",
    "COMMON",
    "MESSAGES",
    "MODEL",
    "REPO_ROOT",
    "Common",
    "NetworkRefused",
    "child_env",
    "guard_network",
    "latency_summary",
    "machine_info",
    "package_versions",
    "percentile",
    "raise_fd_limit",
    "ratio",
    "rss_bytes",
]
