"""What feeds :class:`~backend.metrics.definitions.BulwarkMetrics`: listeners on Bulwark's
events, each cheap, synchronous and free of I/O.

* :class:`MeteredHistory` wraps the gateway's history sink and counts **attempts, retries,
  call durations and fallbacks from the finished call's ledger** (``CallRecord`` and its
  ``AttemptRecord`` list). The ledger is the one place where every label is exact: the agent
  and route come from the call, not parsed from a context string; the target is the one each
  attempt was filed under; and the outcome is final (an answer that failed the schema, or a
  stream that broke after the manager counted a success, is amended to a failure before the
  call ends). It also counts the gateway's own re-ask after an invalid answer, which the
  recovery manager never sees, so the metrics agree with ``llm_attempts`` row for row. The
  price: a call's attempts are counted when the call ends, not as each attempt ends.
* :class:`RecoveryMetrics` is a recovery listener for what the ledger does not hold: a retry
  skipped because the **retry budget** was spent (``GiveUpEvent.reason == BUDGET``).
* :class:`BreakerMetrics` hears breaker transitions (``BreakerRegistry.on_transition``);
  :func:`observe_breaker_snapshots` sets the state gauge from a store's snapshots, so the
  gauge also shows transitions other processes wrote.
* :class:`TaskMetrics` is what the worker calls when a task ends, and to publish the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from itertools import pairwise

from backend.core.breaker_state import STATE_GAUGE, BreakerEvent, BreakerSnapshot
from backend.core.recovery_events import BaseRecoveryListener, GiveUpEvent
from backend.core.retry_policy import Decision, GiveUpReason
from backend.llm.history import AttemptRecord, CallRecord, HistorySink
from backend.metrics.definitions import BulwarkMetrics, label

logger = logging.getLogger(__name__)


class MeteredHistory:
    """A :class:`~backend.llm.history.HistorySink` that observes every finished call, then
    hands it to ``inner`` (``None``: metrics only, no stored history). A failure to observe is
    logged and never costs the call its history."""

    def __init__(self, inner: HistorySink | None, metrics: BulwarkMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def submit(self, call: CallRecord, attempts: list[AttemptRecord]) -> None:
        try:
            self.observe(call, attempts)
        except Exception:  # metrics are best effort; the history below must still be kept
            logger.exception("metrics: could not observe call %s", call.id)
        if self.inner is not None:
            self.inner.submit(call, attempts)

    async def flush(self) -> int:
        return await self.inner.flush() if self.inner is not None else 0

    def observe(self, call: CallRecord, attempts: Sequence[AttemptRecord]) -> None:
        """Count ``call``'s attempts, retries and fallbacks and observe its duration."""
        m = self.metrics
        agent = label(call.agent)
        for attempt in attempts:
            target = label(attempt.target)
            m.llm_attempts.labels(
                target, agent, label(attempt.outcome), label(attempt.category)
            ).inc()
            if attempt.decision == Decision.RETRY.value:
                m.llm_retries.labels(target, agent).inc()
        # A target's last attempt is marked "fallback" when the route moves on; the hand-over
        # happened only if another target was then tried (the last target of a route is also
        # marked, with nothing after it).
        for before, after in pairwise(attempts):
            if before.decision == Decision.FALLBACK.value and after.target != before.target:
                m.fallbacks.labels(label(call.route), before.target, after.target).inc()
        if not call.replayed:
            duration = max(0.0, call.duration_ms / 1000.0)
            m.llm_call_duration.labels(label(call.target), agent).observe(duration)


class RecoveryMetrics(BaseRecoveryListener):
    """Counts retries the retry budget refused, per target (the call's breaker key; ``none``
    for a call made without a breaker). Attempts and retries are counted by
    :class:`MeteredHistory`, so this listener does not count them again."""

    def __init__(self, metrics: BulwarkMetrics) -> None:
        self.metrics = metrics

    def on_give_up(self, event: GiveUpEvent) -> None:
        if event.reason is GiveUpReason.BUDGET:
            self.metrics.retry_budget_exhausted.labels(label(event.breaker_key)).inc()


class BreakerMetrics:
    """A breaker transition listener: sets ``bulwark_breaker_state`` and counts
    ``bulwark_breaker_transitions_total`` (not the self-moves the history also records: an
    operator's reset of a closed breaker, a lapsed probe reservation). Register with
    ``gateway.breakers.on_transition(BreakerMetrics(metrics))``."""

    def __init__(self, metrics: BulwarkMetrics) -> None:
        self.metrics = metrics

    def __call__(self, event: BreakerEvent) -> None:
        self.metrics.breaker_state.labels(event.key).set(STATE_GAUGE[event.to_state])
        if event.from_state is not event.to_state:  # self-moves are history, not transitions
            self.metrics.breaker_transitions.labels(event.key, event.to_state.value).inc()


def observe_breaker_snapshots(
    metrics: BulwarkMetrics, snapshots: Iterable[BreakerSnapshot]
) -> None:
    """Set the state gauge of every breaker from its stored snapshot (``await store.list()``),
    so it also reflects transitions written by other processes. Counts no transition."""
    for snapshot in snapshots:
        metrics.breaker_state.labels(snapshot.key).set(STATE_GAUGE[snapshot.state])


class TaskMetrics:
    """What the worker reports about tasks."""

    def __init__(self, metrics: BulwarkMetrics) -> None:
        self.metrics = metrics

    def task_finished(self, type: str, status: str, duration: float) -> None:
        """A task of ``type`` ended with ``status`` (succeeded, failed, cancelled) after
        ``duration`` seconds of work. ``type`` must be a registered task type."""
        self.metrics.tasks.labels(label(type), label(status)).inc()
        self.metrics.task_duration.labels(label(type)).observe(max(0.0, duration))

    def set_queued(self, count: int) -> None:
        """Publish how many tasks wait in the queue (counted in the database)."""
        self.metrics.tasks_queued.set(max(0, count))


__all__ = [
    "BreakerMetrics",
    "MeteredHistory",
    "RecoveryMetrics",
    "TaskMetrics",
    "observe_breaker_snapshots",
]
