"""Prometheus multiprocess mode: how several Bulwark processes on one host report one sum.

``prometheus_client`` switches every metric to per-process files when the environment
variable ``PROMETHEUS_MULTIPROC_DIR`` names a directory **when it is first imported**, so the
variable must be in the process environment (systemd unit, container, shell), not in
``.env``. Set it **per host**, to a directory that only that host's Bulwark processes share
(API workers, task workers), and empty it before they start (:func:`reset_multiprocess_dir`;
files of earlier runs would be summed in). Each host's ``/metrics`` then reports the sum of
its processes' counters and histograms; Prometheus sums across hosts (``sum by (...)``).

Gauges need a mode: see :mod:`backend.metrics.definitions`. When a process exits, its
``live*`` gauges must go (:func:`mark_process_dead`, from an ``atexit`` hook installed by
:func:`install_exit_hook`, or from a supervisor's child-exit hook with the child's pid).
Without the variable every function here is a no-op and ``/metrics`` shows this process.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess, values

#: The environment variable ``prometheus_client`` reads.
ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"

_hook_installed = False


def multiprocess_dir() -> Path | None:
    """The directory of multiprocess mode, or ``None`` when this process runs alone."""
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value) if value else None


def multiprocess_enabled() -> bool:
    return multiprocess_dir() is not None


def ensure_multiprocess_ready() -> None:
    """Fail early, with the fix, when multiprocess mode is asked for but cannot work: the
    directory is missing, or ``prometheus_client`` was imported before the variable was set
    (its metrics would then silently stay per process)."""
    path = multiprocess_dir()
    if path is None:
        return
    if not path.is_dir():
        raise RuntimeError(
            f"{ENV_VAR} is set to {str(path)!r}, which is not a directory: create it (one per "
            "host, emptied before the processes start) or unset the variable."
        )
    if not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError(
            f"{ENV_VAR} was set after prometheus_client was imported, so metrics would not be "
            "shared between processes: set it in the environment before starting Python."
        )


def collecting_registry(path: Path | None = None) -> CollectorRegistry:
    """A registry that reads every process's files: what ``/metrics`` serves in this mode."""
    directory = path or multiprocess_dir()
    if directory is None:
        raise RuntimeError(f"multiprocess mode is off: {ENV_VAR} is not set")
    registry = CollectorRegistry()
    # prometheus_client leaves this constructor unannotated.
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return registry


def mark_process_dead(pid: int | None = None) -> None:
    """Drop the ``live*`` gauge files of process ``pid`` (default: this process)."""
    path = multiprocess_dir()
    if path is None:
        return
    # prometheus_client leaves this function unannotated.
    multiprocess.mark_process_dead(pid or os.getpid(), str(path))  # type: ignore[no-untyped-call]


def _on_exit() -> None:
    mark_process_dead(os.getpid())


def install_exit_hook() -> None:
    """Mark this process dead when it exits normally (once per process; no-op when off)."""
    global _hook_installed
    if _hook_installed or not multiprocess_enabled():
        return
    atexit.register(_on_exit)
    _hook_installed = True


def reset_multiprocess_dir(path: Path | None = None) -> int:
    """Delete the metric files left by earlier runs; call once per host, before the
    processes start. Returns how many files were removed."""
    directory = path or multiprocess_dir()
    if directory is None or not directory.is_dir():
        return 0
    removed = 0
    for file in directory.glob("*.db"):
        file.unlink(missing_ok=True)
        removed += 1
    return removed


__all__ = [
    "ENV_VAR",
    "collecting_registry",
    "ensure_multiprocess_ready",
    "install_exit_hook",
    "mark_process_dead",
    "multiprocess_dir",
    "multiprocess_enabled",
    "reset_multiprocess_dir",
]
