"""Bulwark's Prometheus metrics: definitions on a registry passed in, listeners that feed them
from Bulwark's events, multiprocess mode, and the ``/metrics`` exposition.

The core never imports this package; the application wires it (see
:mod:`backend.metrics.definitions` for every metric)."""

from __future__ import annotations

from backend.metrics.definitions import NONE, BulwarkMetrics, label
from backend.metrics.exposition import (
    HttpMetricsMiddleware,
    metrics_authorized,
    render_metrics,
    route_template,
)
from backend.metrics.listeners import (
    BreakerMetrics,
    MeteredHistory,
    RecoveryMetrics,
    TaskMetrics,
    observe_breaker_snapshots,
)
from backend.metrics.multiprocess import (
    collecting_registry,
    install_exit_hook,
    mark_process_dead,
    multiprocess_enabled,
    reset_multiprocess_dir,
)

__all__ = [
    "NONE",
    "BreakerMetrics",
    "BulwarkMetrics",
    "HttpMetricsMiddleware",
    "MeteredHistory",
    "RecoveryMetrics",
    "TaskMetrics",
    "collecting_registry",
    "install_exit_hook",
    "label",
    "mark_process_dead",
    "metrics_authorized",
    "multiprocess_enabled",
    "observe_breaker_snapshots",
    "render_metrics",
    "reset_multiprocess_dir",
    "route_template",
]
