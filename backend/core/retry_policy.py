"""Retry decisions, free of I/O: the configuration, the backoff with full jitter, the handling
of a provider's Retry-After, and the retry budget. The loop that carries these decisions out
is :class:`backend.core.error_recovery.ErrorRecoveryManager`."""

from __future__ import annotations

import enum
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from backend.core.errors import Classification


@dataclass(frozen=True, slots=True)
class RecoveryConfig:
    """Retry policy. Defaults are the reference design's: 3 retries (so up to 4 calls),
    100 ms first wait doubling up to 10 s, 30 s per attempt."""

    max_retries: int = 3
    initial_wait: float = 0.1
    multiplier: float = 2.0
    max_wait: float = 10.0
    """Caps Bulwark's own backoff; a provider's Retry-After may exceed it."""
    attempt_timeout: float = 30.0
    retry_after_ceiling: float = 60.0
    """A Retry-After longer than this fails at once instead of sleeping."""
    jitter: bool = True
    """Full jitter: the wait is drawn uniformly from [0, backoff]."""
    budget_ratio: float = 0.2
    """Retries allowed per call in the rolling window (0.2 = one retry per five calls)."""
    budget_min_retries: int = 10
    """Retries always allowed per window, so a quiet service still retries fully."""
    budget_window: float = 10.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if self.initial_wait < 0 or self.max_wait < 0:
            raise ValueError("waits must be 0 or more")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if self.attempt_timeout <= 0:
            raise ValueError("attempt_timeout must be positive")


class Decision(enum.StrEnum):
    """What the manager does after an attempt."""

    SUCCEED = "succeed"
    RETRY = "retry"
    GIVE_UP = "give_up"
    FALLBACK = "fallback"
    """Set by the gateway on a target's last attempt when it moves on to the next target."""


class GiveUpReason(enum.StrEnum):
    PERMANENT = "permanent"
    EXHAUSTED = "retries_exhausted"
    BUDGET = "retry_budget_exhausted"
    DEADLINE = "deadline"
    RETRY_AFTER_TOO_LONG = "retry_after_too_long"
    CIRCUIT_OPEN = "circuit_open"
    CANCELLED = "cancelled"


def backoff_ceiling(config: RecoveryConfig, retry_number: int) -> float:
    """Bulwark's own backoff before retry ``retry_number`` (1-based), before jitter."""
    raw = config.initial_wait * config.multiplier ** (retry_number - 1)
    return min(config.max_wait, raw)


@dataclass(frozen=True, slots=True)
class RetryPlan:
    decision: Decision
    wait: float = 0.0
    reason: GiveUpReason | None = None


def plan_retry(
    config: RecoveryConfig,
    classification: Classification,
    *,
    attempt: int,
    remaining: float | None,
    rng: Callable[[float, float], float] = random.uniform,
) -> RetryPlan:
    """Decide what follows failed attempt number ``attempt`` (1-based).

    ``remaining`` is the time left before the call's deadline (``None``: no deadline). The
    retry budget is consulted by the caller only when this says retry.
    """
    if not classification.transient:
        return RetryPlan(Decision.GIVE_UP, reason=GiveUpReason.PERMANENT)
    if attempt > config.max_retries:
        return RetryPlan(Decision.GIVE_UP, reason=GiveUpReason.EXHAUSTED)
    ceiling = backoff_ceiling(config, attempt)
    wait = rng(0.0, ceiling) if config.jitter else ceiling
    hint = classification.retry_after_seconds
    if hint is not None:
        if hint > config.retry_after_ceiling:
            return RetryPlan(Decision.GIVE_UP, reason=GiveUpReason.RETRY_AFTER_TOO_LONG)
        wait = max(wait, hint)
    if remaining is not None and wait >= remaining:
        return RetryPlan(Decision.GIVE_UP, wait=wait, reason=GiveUpReason.DEADLINE)
    return RetryPlan(Decision.RETRY, wait=wait)


class RetryBudget:
    """Caps retries in a rolling window at ``ratio`` times calls (at least ``min_retries``), so a
    fleet-wide outage does not multiply traffic. One per manager; thread-safe, since the
    sync API runs attempts on other threads."""

    def __init__(self, config: RecoveryConfig, now: Callable[[], float]) -> None:
        self._ratio = config.budget_ratio
        self._min = config.budget_min_retries
        self._window = config.budget_window
        self._now = now
        self._calls: deque[float] = deque()
        self._retries: deque[float] = deque()
        self._lock = threading.Lock()

    def _trim(self) -> float:
        now = self._now()
        horizon = now - self._window
        for stamps in (self._calls, self._retries):
            while stamps and stamps[0] <= horizon:
                stamps.popleft()
        return now

    def record_call(self) -> None:
        with self._lock:
            self._calls.append(self._trim())

    def try_spend(self) -> bool:
        """Take one retry from the budget; ``False`` (and nothing taken) when it is spent."""
        with self._lock:
            now = self._trim()
            if len(self._retries) >= max(self._min, self._ratio * len(self._calls)):
                return False
            self._retries.append(now)
            return True

    @property
    def retries_in_window(self) -> int:
        with self._lock:
            self._trim()
            return len(self._retries)


__all__ = [
    "Decision",
    "GiveUpReason",
    "RecoveryConfig",
    "RetryBudget",
    "RetryPlan",
    "backoff_ceiling",
    "plan_retry",
]
