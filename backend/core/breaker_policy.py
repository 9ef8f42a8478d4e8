"""The circuit breaker's rules, free of I/O: which moves between states are allowed (the
transition table), whether a call may go now (:func:`admit`), and what each outcome does to
the shared snapshot (:func:`after_failure`, :func:`after_success`, :func:`release_probe`,
:func:`reserve_probe`, and the operator actions :func:`reset` and :func:`force_open`).

Every rule returns the snapshot to write and the event to record with it, or ``None`` when
nothing changes (nothing to write). Versions are left as read: the store bumps them in its
compare-and-set. :class:`backend.core.circuit_breaker.CircuitBreaker` carries these out.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from backend.core.breaker_state import BreakerConfig, BreakerEvent, BreakerSnapshot
from backend.core.breaker_state import BreakerState as S
from backend.core.errors import Classification

SYSTEM_ACTOR = "system"
"""The actor recorded on automatic transitions."""


class Reason(enum.StrEnum):
    """Why a breaker changed state; stored as ``BreakerEvent.reason``."""

    FAILURE_THRESHOLD = "failure_threshold"
    PROBE_FAILED = "probe_failed"
    PROBE_SUCCEEDED = "probe_succeeded"
    OPEN_TIME_ELAPSED = "open_time_elapsed"
    PROBE_EXPIRED = "probe_expired"
    RESET = "reset"
    FORCED_OPEN = "forced_open"


#: Every allowed move, with the reasons that justify it. Anything else is a bug and raises.
#: Self-moves (closed→closed, open→open) exist only for operator actions, so that history
#: records them; half_open→half_open records a probe reservation that lapsed.
TRANSITIONS: Mapping[tuple[S, S], frozenset[Reason]] = {
    (S.CLOSED, S.OPEN): frozenset({Reason.FAILURE_THRESHOLD, Reason.FORCED_OPEN}),
    (S.OPEN, S.HALF_OPEN): frozenset({Reason.OPEN_TIME_ELAPSED}),
    (S.HALF_OPEN, S.CLOSED): frozenset({Reason.PROBE_SUCCEEDED, Reason.RESET}),
    (S.HALF_OPEN, S.OPEN): frozenset({Reason.PROBE_FAILED, Reason.FORCED_OPEN}),
    (S.HALF_OPEN, S.HALF_OPEN): frozenset({Reason.PROBE_EXPIRED}),
    (S.OPEN, S.CLOSED): frozenset({Reason.RESET}),
    (S.CLOSED, S.CLOSED): frozenset({Reason.RESET}),
    (S.OPEN, S.OPEN): frozenset({Reason.FORCED_OPEN}),
}


class IllegalTransitionError(ValueError):
    """A move the transition table does not allow: a bug in the caller, never a runtime
    condition of the target."""


class Verdict(enum.StrEnum):
    ALLOW = "allow"
    """Closed: the call goes, nothing to write."""
    PROBE = "probe"
    """The call may go as a probe, once a probe reservation is stored."""
    REFUSE = "refuse"
    """The call fails at once with ``CircuitOpenError``."""


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict
    retry_at: datetime | None = None
    """For a refusal: when a probe may go next (``None``: forced open until reset)."""


class Change(NamedTuple):
    """A snapshot to write, and the event to record in the same compare-and-set."""

    snapshot: BreakerSnapshot
    event: BreakerEvent | None = None


def check_transition(from_state: S, to_state: S, reason: Reason) -> None:
    """Raise :class:`IllegalTransitionError` unless the table allows this move."""
    if reason not in TRANSITIONS.get((from_state, to_state), frozenset()):
        raise IllegalTransitionError(
            f"a breaker cannot move from {from_state} to {to_state} because of {reason}"
        )


def transition(
    snapshot: BreakerSnapshot,
    to_state: S,
    reason: Reason,
    now: datetime,
    *,
    actor: str = SYSTEM_ACTOR,
    retry_at: datetime | None = None,
    forced_open: bool = False,
    failure: Classification | None = None,
) -> Change:
    """The one way a breaker changes state. Entering any state releases every probe
    reservation; closing forgets the failures and the open time; opening stamps ``opened_at``
    and keeps ``retry_at`` (half-open keeps ``opened_at`` for messages). ``failure`` is the
    outcome that caused the move, recorded as the last error and on the event."""
    check_transition(snapshot.state, to_state, reason)
    opening = to_state is S.OPEN
    new = replace(
        snapshot,
        state=to_state,
        consecutive_failures=0 if to_state is S.CLOSED else snapshot.consecutive_failures,
        opened_at=now if opening else snapshot.opened_at if to_state is S.HALF_OPEN else None,
        retry_at=retry_at if opening else None,
        forced_open=forced_open and opening,
        probes_in_flight=0,
        probe_expires_at=None,
        last_error=(failure.message or None) if failure else snapshot.last_error,
        last_category=failure.category.value if failure else snapshot.last_category,
        updated_at=now,
    )
    event = BreakerEvent(
        key=snapshot.key,
        from_state=snapshot.state,
        to_state=to_state,
        reason=reason,
        actor=actor,
        at=now,
        category=failure.category.value if failure else None,
        message=(failure.message or None) if failure else None,
    )
    return Change(new, event)


def open_until(now: datetime, failure: Classification, config: BreakerConfig) -> datetime:
    """An open breaker waits ``open_seconds``, or the provider's Retry-After when longer,
    capped at ``max_open_seconds``."""
    hint = min(failure.retry_after_seconds or 0.0, config.max_open_seconds)
    return now + timedelta(seconds=max(config.open_seconds, hint))


def _probe_lease_lapsed(snapshot: BreakerSnapshot, now: datetime) -> bool:
    expires = snapshot.probe_expires_at
    return expires is not None and expires < now


def probes_in_flight(snapshot: BreakerSnapshot, now: datetime) -> int:
    """Probes still holding a reservation; a lapsed reservation counts as none (its process
    may have died)."""
    return 0 if _probe_lease_lapsed(snapshot, now) else snapshot.probes_in_flight


def admit(snapshot: BreakerSnapshot, now: datetime, config: BreakerConfig) -> Admission:
    """Closed: the call goes. Open: refused until ``retry_at``, then one may probe; forced
    open: refused until an operator resets it. Half-open: a call may probe while fewer than
    ``half_open_max_calls`` probes hold a reservation; otherwise refused."""
    if snapshot.state is S.CLOSED:
        return Admission(Verdict.ALLOW)
    if snapshot.state is S.OPEN:
        if snapshot.forced_open:
            return Admission(Verdict.REFUSE, None)
        if snapshot.retry_at is not None and now < snapshot.retry_at:
            return Admission(Verdict.REFUSE, snapshot.retry_at)
        return Admission(Verdict.PROBE)
    if probes_in_flight(snapshot, now) < config.half_open_max_calls:
        return Admission(Verdict.PROBE)
    return Admission(Verdict.REFUSE, snapshot.probe_expires_at)


def reserve_probe(snapshot: BreakerSnapshot, now: datetime, config: BreakerConfig) -> Change:
    """Take one probe slot for ``probe_lease_seconds``. From open this is the move to
    half-open (the open time elapsed); in half-open a lapsed reservation is dropped first
    (recorded as ``probe_expired``). Raises when :func:`admit` would not allow a probe."""
    if admit(snapshot, now, config).verdict is not Verdict.PROBE:
        raise IllegalTransitionError(f"breaker {snapshot.key} admits no probe now")
    change = Change(snapshot)
    if snapshot.state is S.OPEN:
        change = transition(snapshot, S.HALF_OPEN, Reason.OPEN_TIME_ELAPSED, now)
    elif snapshot.probes_in_flight > 0 and _probe_lease_lapsed(snapshot, now):
        change = transition(snapshot, S.HALF_OPEN, Reason.PROBE_EXPIRED, now)
    taken = change.snapshot
    new = replace(
        taken,
        probes_in_flight=taken.probes_in_flight + 1,
        probe_expires_at=now + timedelta(seconds=config.probe_lease_seconds),
        updated_at=now,
    )
    return Change(new, change.event)


def after_failure(
    snapshot: BreakerSnapshot,
    failure: Classification,
    now: datetime,
    config: BreakerConfig,
    *,
    probe: bool,
) -> Change | None:
    """Only transient failures say anything about the target's health. Closed: one more
    consecutive failure; the ``threshold``-th opens the breaker. Half-open: a failed probe
    reopens it. Open: a late failure of a call let through before it opened changes nothing.
    A permanent failure counts nothing; from a probe it only frees the probe's slot."""
    if not failure.transient:
        return release_probe(snapshot, now) if probe else None
    if snapshot.state is S.CLOSED:
        failures = snapshot.consecutive_failures + 1
        if failures >= config.threshold:
            counted = replace(snapshot, consecutive_failures=failures)
            until = open_until(now, failure, config)
            return transition(
                counted, S.OPEN, Reason.FAILURE_THRESHOLD, now, retry_at=until, failure=failure
            )
        counted = replace(
            snapshot,
            consecutive_failures=failures,
            last_error=failure.message or None,
            last_category=failure.category.value,
            updated_at=now,
        )
        return Change(counted)
    if snapshot.state is S.HALF_OPEN and probe:
        until = open_until(now, failure, config)
        return transition(
            snapshot, S.OPEN, Reason.PROBE_FAILED, now, retry_at=until, failure=failure
        )
    return None


def after_success(
    snapshot: BreakerSnapshot, now: datetime, config: BreakerConfig, *, probe: bool
) -> Change | None:
    """Closed: a success ends the run of consecutive failures (nothing to write when there
    was none: the hot path). Half-open: a successful probe closes the breaker. A late success
    of a call let through before the breaker opened changes nothing."""
    if snapshot.state is S.CLOSED:
        if snapshot.consecutive_failures == 0:
            return None
        return Change(replace(snapshot, consecutive_failures=0, updated_at=now))
    if snapshot.state is S.HALF_OPEN and probe:
        return transition(snapshot, S.CLOSED, Reason.PROBE_SUCCEEDED, now)
    return None


def release_probe(
    snapshot: BreakerSnapshot, now: datetime, *, lease_expires_at: datetime | None = None
) -> Change | None:
    """A probe that ended without a verdict on the target (cancelled, its own deadline
    passed, a permanent error) gives its slot back; the state does not change. A probe whose
    own lease (``lease_expires_at``) already lapsed holds no slot any more: nothing to do."""
    if snapshot.state is not S.HALF_OPEN or snapshot.probes_in_flight == 0:
        return None
    if lease_expires_at is not None and lease_expires_at < now:
        return None
    remaining = snapshot.probes_in_flight - 1
    expires = snapshot.probe_expires_at if remaining else None
    return Change(
        replace(snapshot, probes_in_flight=remaining, probe_expires_at=expires, updated_at=now)
    )


def reset(snapshot: BreakerSnapshot, now: datetime, actor: str) -> Change:
    """An operator closes the breaker, whatever its state; always recorded."""
    return transition(snapshot, S.CLOSED, Reason.RESET, now, actor=actor)


def force_open(snapshot: BreakerSnapshot, now: datetime, actor: str) -> Change:
    """An operator isolates the target: open with no retry time and no probes, until reset."""
    return transition(snapshot, S.OPEN, Reason.FORCED_OPEN, now, actor=actor, forced_open=True)


__all__ = [
    "SYSTEM_ACTOR",
    "TRANSITIONS",
    "Admission",
    "Change",
    "IllegalTransitionError",
    "Reason",
    "Verdict",
    "admit",
    "after_failure",
    "after_success",
    "check_transition",
    "force_open",
    "open_until",
    "probes_in_flight",
    "release_probe",
    "reserve_probe",
    "reset",
    "transition",
]
