"""What the recovery manager tells the world, as typed events, and the listener protocol that
recording and metrics implement. The manager never imports either of them."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from backend.core.breaker_state import BreakerState
from backend.core.errors import Classification
from backend.core.retry_policy import Decision, GiveUpReason


class AttemptOutcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    REFUSED = "refused"
    """The breaker refused the attempt; nothing was sent."""


@dataclass(frozen=True, slots=True)
class AttemptEvent:
    """One attempt, once its consequence is known (after the wait it led to, if any)."""

    context: str
    attempt: int
    breaker_key: str | None
    breaker_state: BreakerState | None
    """The breaker's state when the attempt was admitted or refused."""
    started_at: datetime
    duration: float
    outcome: AttemptOutcome
    classification: Classification | None
    decision: Decision
    wait: float = 0.0
    """Seconds actually slept before the next attempt."""
    give_up_reason: GiveUpReason | None = None


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """A retry was decided; the manager is about to sleep ``wait`` seconds."""

    context: str
    attempt: int
    wait: float
    classification: Classification
    breaker_key: str | None


@dataclass(frozen=True, slots=True)
class GiveUpEvent:
    """The manager stopped trying and is about to raise."""

    context: str
    attempts: int
    reason: GiveUpReason
    classification: Classification
    breaker_key: str | None


class RecoveryListener(Protocol):
    """Receives the manager's events. Called inline on the caller's task: implementations
    must be quick and must not do I/O (buffer and write elsewhere)."""

    def on_attempt(self, event: AttemptEvent) -> None: ...

    def on_retry(self, event: RetryEvent) -> None: ...

    def on_give_up(self, event: GiveUpEvent) -> None: ...


class BaseRecoveryListener:
    """A listener that ignores everything; subclass and override what you need."""

    def on_attempt(self, event: AttemptEvent) -> None:
        return None

    def on_retry(self, event: RetryEvent) -> None:
        return None

    def on_give_up(self, event: GiveUpEvent) -> None:
        return None


__all__ = [
    "AttemptEvent",
    "AttemptOutcome",
    "BaseRecoveryListener",
    "GiveUpEvent",
    "RecoveryListener",
    "RetryEvent",
]
