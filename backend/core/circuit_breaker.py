"""The circuit breaker callers hold: one per target key (``provider:model``). It asks the
rules in :mod:`backend.core.breaker_policy` what to do and carries the answer out on a
:class:`~backend.core.breaker_state.BreakerStore` through compare-and-set, so every process
sharing the store agrees; on a lost race it re-reads the store and decides again.

Usage: ``permit = await breaker.acquire()``, make the call, then exactly one of
``record_success(permit)``, ``record_failure(permit, classification)`` or ``release(permit)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from backend.core import breaker_policy as policy
from backend.core.breaker_state import (
    BreakerConfig,
    BreakerEvent,
    BreakerSnapshot,
    BreakerState,
    BreakerStore,
)
from backend.core.clock import SYSTEM_CLOCK, Clock
from backend.core.errors import ADVICE, CircuitOpenError, Classification, ErrorCategory
from backend.core.memory_breaker_store import MemoryBreakerStore

logger = logging.getLogger(__name__)

CAS_ATTEMPTS = 16
"""Compare-and-set tries per outcome before giving up (the outcome is then dropped)."""
OPERATOR_CAS_ATTEMPTS = 20
"""Operator actions must land; past this many lost races they raise."""

Rule = Callable[[BreakerSnapshot, datetime], policy.Change | None]
TransitionListener = Callable[[BreakerEvent], None]


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to make one call. A probe holds one of the half-open slots until it reports an
    outcome, is released, or its lease (``lease_expires_at``) lapses."""

    key: str
    probe: bool = False
    lease_expires_at: datetime | None = None


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "an unknown time"


def refusal(snapshot: BreakerSnapshot, admission: policy.Admission) -> CircuitOpenError:
    """The error for a refused call: which target, since when, and when calls resume."""
    key = snapshot.key
    since = _when(snapshot.opened_at)
    advice = f" {ADVICE[ErrorCategory.CIRCUIT_OPEN].capitalize()}."
    if snapshot.state is BreakerState.OPEN and snapshot.forced_open:
        what = f"was forced open by an operator at {since}; calls stay refused until it is reset."
        advice = ""
    elif snapshot.state is BreakerState.OPEN:
        cause = f" (last error: {snapshot.last_category})" if snapshot.last_category else ""
        what = (
            f"is open since {since}{cause}; "
            f"it will let a probe call through at {_when(admission.retry_at)}."
        )
    else:
        what = (
            f"is half-open (open since {since}): probe calls are testing the target, and "
            "calls resume when one succeeds."
        )
    message = f"The circuit breaker of {key} {what}{advice}"
    return CircuitOpenError(message, breaker_key=key, retry_at=admission.retry_at)


class CircuitBreaker:
    """Refuses calls to a failing target so it can recover, and lets bounded probes test it.

    A closed breaker admits calls from the (possibly cached) snapshot without writing
    anything; only outcomes that change the snapshot are written. Keyword arguments override
    the fields of ``config``.
    """

    def __init__(
        self,
        key: str,
        *,
        store: BreakerStore | None = None,
        threshold: int | None = None,
        open_seconds: float | None = None,
        half_open_max_calls: int | None = None,
        config: BreakerConfig | None = None,
        clock: Clock | None = None,
        on_transition: Iterable[TransitionListener] = (),
    ) -> None:
        config = config or BreakerConfig()
        config = replace(
            config,
            threshold=config.threshold if threshold is None else threshold,
            open_seconds=config.open_seconds if open_seconds is None else open_seconds,
            half_open_max_calls=(
                config.half_open_max_calls if half_open_max_calls is None else half_open_max_calls
            ),
        )
        self._key = key
        self._config = config
        self._store: BreakerStore = store if store is not None else MemoryBreakerStore()
        self._clock = clock or SYSTEM_CLOCK
        self.on_transition: list[TransitionListener] = list(on_transition)
        """Called with every event this breaker writes, after the write (e.g. metrics)."""

    @property
    def key(self) -> str:
        return self._key

    @property
    def config(self) -> BreakerConfig:
        return self._config

    async def acquire(self) -> Permit:
        """A permit to call the target, or :class:`CircuitOpenError` when the breaker
        refuses. Closed costs one ``store.get`` and no write; a probe is reserved by
        compare-and-set, so at most ``half_open_max_calls`` probes run fleet-wide."""
        snapshot = await self._store.get(self._key)
        for _ in range(self._config.half_open_max_calls + CAS_ATTEMPTS):
            now = self._clock.now()
            admission = policy.admit(snapshot, now, self._config)
            if admission.verdict is policy.Verdict.ALLOW:
                return Permit(self._key)
            if admission.verdict is policy.Verdict.REFUSE:
                raise refusal(snapshot, admission)
            change = policy.reserve_probe(snapshot, now, self._config)
            if await self._write(snapshot, change) is not None:
                return Permit(self._key, True, change.snapshot.probe_expires_at)
            snapshot = await self._store.refresh(self._key)
        retry_at = snapshot.retry_at or snapshot.probe_expires_at  # lost every race
        raise refusal(snapshot, policy.Admission(policy.Verdict.REFUSE, retry_at))

    async def record_success(self, permit: Permit) -> None:
        """The call succeeded: closes a half-open breaker after a probe, ends a failure run."""
        probe = self._own(permit).probe
        await self._apply(
            lambda snap, now: policy.after_success(snap, now, self._config, probe=probe)
        )

    async def record_failure(self, permit: Permit, classification: Classification) -> None:
        """The call failed: transient failures count toward opening, or reopen after a probe."""
        probe = self._own(permit).probe
        await self._apply(
            lambda snap, now: policy.after_failure(
                snap, classification, now, self._config, probe=probe
            )
        )

    async def release(self, permit: Permit) -> None:
        """The call ended with no verdict on the target (cancelled, own deadline passed):
        nothing counts, and a probe gives its slot back. No I/O for a non-probe permit."""
        if not self._own(permit).probe:
            return
        lease = permit.lease_expires_at
        await self._apply(lambda snap, now: policy.release_probe(snap, now, lease_expires_at=lease))

    async def reset(self, actor: str = "operator") -> BreakerSnapshot:
        """Close the breaker (operator action, recorded with ``actor``)."""
        return await self._operate(lambda snap, now: policy.reset(snap, now, actor))

    async def force_open(self, actor: str = "operator") -> BreakerSnapshot:
        """Isolate the target until reset (operator action, recorded with ``actor``)."""
        return await self._operate(lambda snap, now: policy.force_open(snap, now, actor))

    async def snapshot(self, *, fresh: bool = False) -> BreakerSnapshot:
        """The breaker as this process knows it: its own transitions at once, other
        processes' within ``cache_seconds`` (no I/O on a warm cache). ``fresh`` reads past
        the cache, for operator views."""
        read = self._store.refresh if fresh else self._store.get
        return await read(self._key)

    async def events(self, limit: int = 50) -> list[BreakerEvent]:
        """This breaker's history, newest first."""
        return await self._store.events(self._key, limit)

    def _own(self, permit: Permit) -> Permit:
        if permit.key != self._key:
            raise ValueError(f"a permit for {permit.key} was reported to breaker {self._key}")
        return permit

    async def _write(
        self, expected: BreakerSnapshot, change: policy.Change
    ) -> BreakerSnapshot | None:
        """One compare-and-set; listeners hear the event once it is stored."""
        stored = await self._store.compare_and_set(expected, change.snapshot, change.event)
        if stored is not None and change.event is not None:
            for listener in self.on_transition:
                try:
                    listener(change.event)
                except Exception:  # a broken listener must not break the breaker
                    logger.exception("breaker %s: a transition listener failed", self._key)
        return stored

    async def _apply(self, rule: Rule, *, fresh: bool = False) -> BreakerSnapshot | None:
        """Decide from the snapshot, write by compare-and-set; on a lost race re-read the
        store and decide again. Returns the snapshot as stored or left, ``None`` on giving up."""
        read = self._store.refresh if fresh else self._store.get
        snapshot = await read(self._key)
        attempts = OPERATOR_CAS_ATTEMPTS if fresh else CAS_ATTEMPTS
        for _ in range(attempts):
            change = rule(snapshot, self._clock.now())
            if change is None:
                return snapshot
            stored = await self._write(snapshot, change)
            if stored is not None:
                return stored
            snapshot = await self._store.refresh(self._key)
        logger.warning(
            "breaker %s: gave up after %d lost compare-and-set races", self._key, attempts
        )
        return None

    async def _operate(self, rule: Rule) -> BreakerSnapshot:
        stored = await self._apply(rule, fresh=True)
        if stored is None:
            raise RuntimeError(f"breaker {self._key}: the store kept refusing the change")
        return stored


__all__ = ["CAS_ATTEMPTS", "CircuitBreaker", "Permit", "TransitionListener", "refusal"]
