"""Aggregates of the call history per target over a time window, for the dashboard: calls
and their outcomes, attempts, retries, fallbacks, refusals, failures by category, mean attempt
time, and breaker transitions (``breaker_events``, keyed by target).

For the dashboard's charts, the window is also cut into equal time buckets (at most
:data:`MAX_BUCKETS`, ``bucket_seconds`` long, the last one ending at ``until``): each target
has its calls, retries and failures per bucket, and ``failures_by_category`` sums the error
categories over every target."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.core.clock import SYSTEM_CLOCK, Clock
from backend.db.models import BreakerEventRow, LLMAttemptRow, LLMCallRow

MAX_BUCKETS = 60
"""How many time buckets a window is cut into, at most (a bucket lasts at least 1 s)."""


@dataclass(slots=True)
class Bucket:
    """One time bucket of a target: ``calls`` that ended on it and started in the bucket,
    attempts sent to it that were then ``retries``, and attempts that were ``failures``."""

    start: datetime
    calls: int = 0
    retries: int = 0
    failures: int = 0


@dataclass(slots=True)
class TargetStats:
    """One target's numbers. ``calls`` counts calls that ended on the target; the attempt
    counts cover every request sent to it (or refused by its breaker)."""

    target: str
    calls: int = 0
    calls_succeeded: int = 0
    calls_failed: int = 0
    attempts: int = 0
    retries: int = 0
    fallbacks: int = 0
    refused: int = 0
    failures: int = 0
    failures_by_category: dict[str, int] = field(default_factory=dict)
    breaker_transitions: dict[str, int] = field(default_factory=dict)
    """Transitions into each state (``open``, ``half_open``, ``closed``)."""
    avg_attempt_ms: float | None = None
    """Mean duration of the attempts actually sent."""
    buckets: list[Bucket] = field(default_factory=list)
    """The window in equal time buckets, oldest first (see :attr:`Stats.bucket_seconds`)."""


@dataclass(frozen=True, slots=True)
class Stats:
    window_seconds: int
    since: datetime
    until: datetime
    targets: list[TargetStats]
    bucket_seconds: int = 0
    failures_by_category: dict[str, int] = field(default_factory=dict)
    """Failed attempts by error category, over every target."""


class StatsService:
    """Read-only aggregates of the history."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    async def stats(self, window_seconds: int) -> Stats:
        """Per-target aggregates over the last ``window_seconds``, by target name."""
        until = self._clock.now()
        since = until - timedelta(seconds=window_seconds)
        targets: dict[str, TargetStats] = {}
        width = max(1, math.ceil(window_seconds / MAX_BUCKETS))
        count_buckets = math.ceil(window_seconds / width)
        first = until - timedelta(seconds=width * count_buckets)

        def entry(target: str) -> TargetStats:
            stats = targets.get(target)
            if stats is None:
                starts = (first + timedelta(seconds=width * i) for i in range(count_buckets))
                stats = targets[target] = TargetStats(target, buckets=[Bucket(s) for s in starts])
            return stats

        def bucket(stats: TargetStats, at: datetime) -> Bucket | None:
            index = int((at - first).total_seconds() // width)
            return stats.buckets[index] if 0 <= index < count_buckets else None

        calls = (
            select(LLMCallRow.target, LLMCallRow.outcome, func.count())
            .where(LLMCallRow.started_at >= since, LLMCallRow.target.is_not(None))
            .group_by(LLMCallRow.target, LLMCallRow.outcome)
        )
        a = LLMAttemptRow
        attempts = (
            select(
                a.target, a.outcome, a.decision, a.category, func.count(), func.sum(a.duration_ms)
            )
            .where(a.started_at >= since)
            .group_by(a.target, a.outcome, a.decision, a.category)
        )
        events = (
            select(BreakerEventRow.key, BreakerEventRow.to_state, func.count())
            .where(BreakerEventRow.at >= since)
            .group_by(BreakerEventRow.key, BreakerEventRow.to_state)
        )
        async with self._sessions() as session:
            for target, outcome, count in await session.execute(calls):
                stats = entry(str(target))
                stats.calls += count
                if outcome == "success":
                    stats.calls_succeeded += count
                else:
                    stats.calls_failed += count
            for row in await session.execute(attempts):
                _add_attempts(entry(row[0]), *row[1:])
            for key, to_state, count in await session.execute(events):
                transitions = entry(key).breaker_transitions
                transitions[to_state] = transitions.get(to_state, 0) + count
            await self._fill_buckets(session, since, entry, bucket)
        ordered = sorted(targets.values(), key=lambda stats: stats.target)
        by_category: dict[str, int] = {}
        for stats in ordered:
            for name, count in stats.failures_by_category.items():
                by_category[name] = by_category.get(name, 0) + count
        categories = dict(sorted(by_category.items()))
        return Stats(window_seconds, since, until, ordered, width, categories)

    @staticmethod
    async def _fill_buckets(
        session: AsyncSession,
        since: datetime,
        entry: Callable[[str], TargetStats],
        bucket: Callable[[TargetStats, datetime], Bucket | None],
    ) -> None:
        """Count calls, retries and failures per time bucket. Only the columns needed are
        read, streamed, in the window."""
        calls = select(LLMCallRow.target, LLMCallRow.started_at).where(
            LLMCallRow.started_at >= since, LLMCallRow.target.is_not(None)
        )
        for target, started_at in await session.execute(calls):
            if (b := bucket(entry(str(target)), started_at)) is not None:
                b.calls += 1
        a = LLMAttemptRow
        attempts = select(a.target, a.started_at, a.outcome, a.decision).where(
            a.started_at >= since, (a.decision == "retry") | (a.outcome == "failure")
        )
        for target, started_at, outcome, decision in await session.execute(attempts):
            if (b := bucket(entry(target), started_at)) is not None:
                b.retries += decision == "retry"
                b.failures += outcome == "failure"


def _add_attempts(
    stats: TargetStats,
    outcome: str,
    decision: str,
    category: str | None,
    count: int,
    total_ms: Any,
) -> None:
    sent_before = stats.attempts - stats.refused
    stats.attempts += count
    if decision == "retry":
        stats.retries += count
    elif decision == "fallback":
        stats.fallbacks += count
    if outcome == "refused":
        stats.refused += count
        return
    if outcome == "failure":
        stats.failures += count
        name = category or "unknown"
        stats.failures_by_category[name] = stats.failures_by_category.get(name, 0) + count
    if total_ms is not None:
        previous = (stats.avg_attempt_ms or 0.0) * sent_before
        stats.avg_attempt_ms = round((previous + float(total_ms)) / (sent_before + count), 3)


__all__ = ["MAX_BUCKETS", "Bucket", "Stats", "StatsService", "TargetStats"]
