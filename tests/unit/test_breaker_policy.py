"""The breaker's rules, as pure functions: no store, no clock, no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from backend.core import breaker_policy as policy
from backend.core.breaker_policy import Reason, Verdict
from backend.core.breaker_state import BreakerConfig, BreakerSnapshot
from backend.core.breaker_state import BreakerState as S
from backend.core.errors import Classification, ErrorCategory

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = BreakerConfig(threshold=3, open_seconds=60.0, probe_lease_seconds=120.0)
KEY = "openai:gpt-4o"
TRANSIENT = Classification(ErrorCategory.SERVER_ERROR, True, status_code=503, message="down")
PERMANENT = Classification(ErrorCategory.AUTH_ERROR, False, status_code=401, message="bad key")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def opened(*, forced: bool = False) -> BreakerSnapshot:
    retry_at = None if forced else at(60)
    return BreakerSnapshot(
        KEY, S.OPEN, 3, opened_at=T0, retry_at=retry_at, forced_open=forced, version=7
    )


def half_open(probes: int = 1, lease_until: float = 120.0) -> BreakerSnapshot:
    return BreakerSnapshot(
        KEY, S.HALF_OPEN, opened_at=T0, probes_in_flight=probes, probe_expires_at=at(lease_until)
    )


# -- the transition table ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_state", "to_state", "reason"),
    [
        (S.CLOSED, S.HALF_OPEN, Reason.OPEN_TIME_ELAPSED),
        (S.CLOSED, S.OPEN, Reason.PROBE_FAILED),
        (S.OPEN, S.CLOSED, Reason.PROBE_SUCCEEDED),
        (S.CLOSED, S.CLOSED, Reason.PROBE_SUCCEEDED),
        (S.OPEN, S.OPEN, Reason.FAILURE_THRESHOLD),
        (S.HALF_OPEN, S.HALF_OPEN, Reason.RESET),
    ],
)
def test_illegal_moves_raise(from_state: S, to_state: S, reason: Reason) -> None:
    with pytest.raises(policy.IllegalTransitionError):
        policy.transition(BreakerSnapshot(KEY, from_state), to_state, reason, T0)


def test_self_moves_exist_only_for_operators_and_lapsed_probes() -> None:
    for (from_state, to_state), reasons in policy.TRANSITIONS.items():
        if from_state is to_state and to_state is not S.HALF_OPEN:
            assert reasons <= {Reason.RESET, Reason.FORCED_OPEN}


def test_transition_records_the_event_and_keeps_the_version() -> None:
    change = policy.transition(opened(), S.HALF_OPEN, Reason.OPEN_TIME_ELAPSED, at(61))
    assert change.snapshot.state is S.HALF_OPEN and change.snapshot.version == 7
    assert change.snapshot.opened_at == T0 and change.snapshot.retry_at is None
    assert change.event is not None
    assert (change.event.from_state, change.event.to_state) == (S.OPEN, S.HALF_OPEN)
    assert (change.event.reason, change.event.actor, change.event.at) == (
        "open_time_elapsed",
        "system",
        at(61),
    )


# -- admission ---------------------------------------------------------------------------


def test_admission_by_state() -> None:
    assert policy.admit(BreakerSnapshot(KEY), T0, CONFIG).verdict is Verdict.ALLOW
    assert policy.admit(opened(), at(59), CONFIG) == policy.Admission(Verdict.REFUSE, at(60))
    assert policy.admit(opened(), at(60), CONFIG).verdict is Verdict.PROBE
    forced = opened(forced=True)
    assert policy.admit(forced, at(10**6), CONFIG) == policy.Admission(Verdict.REFUSE, None)
    assert policy.admit(half_open(probes=0), T0, CONFIG).verdict is Verdict.PROBE
    assert policy.admit(half_open(probes=1), at(120), CONFIG).verdict is Verdict.REFUSE
    roomy = replace(CONFIG, half_open_max_calls=2)
    assert policy.admit(half_open(probes=1), at(1), roomy).verdict is Verdict.PROBE


def test_a_lapsed_probe_reservation_counts_as_none() -> None:
    assert policy.probes_in_flight(half_open(probes=1, lease_until=120), at(121)) == 0
    assert policy.admit(half_open(probes=1, lease_until=120), at(121), CONFIG).verdict is (
        Verdict.PROBE
    )


def test_reserving_a_probe_from_open_moves_to_half_open() -> None:
    change = policy.reserve_probe(opened(), at(60), CONFIG)
    assert change.snapshot.state is S.HALF_OPEN
    assert change.snapshot.probes_in_flight == 1
    assert change.snapshot.probe_expires_at == at(180)
    assert change.event is not None and change.event.reason == "open_time_elapsed"


def test_reserving_more_probes_in_half_open_writes_no_event() -> None:
    roomy = replace(CONFIG, half_open_max_calls=2)
    change = policy.reserve_probe(half_open(probes=1), at(5), roomy)
    assert change.event is None and change.snapshot.probes_in_flight == 2


def test_reserving_over_a_lapsed_probe_records_probe_expired() -> None:
    change = policy.reserve_probe(half_open(probes=1, lease_until=120), at(121), CONFIG)
    assert change.snapshot.probes_in_flight == 1
    assert change.snapshot.probe_expires_at == at(241)
    assert change.event is not None and change.event.reason == "probe_expired"


def test_reserving_a_probe_that_is_not_admitted_raises() -> None:
    with pytest.raises(policy.IllegalTransitionError):
        policy.reserve_probe(opened(), at(10), CONFIG)
    with pytest.raises(policy.IllegalTransitionError):
        policy.reserve_probe(BreakerSnapshot(KEY), T0, CONFIG)


# -- failures ------------------------------------------------------------------------------


def test_transient_failures_count_and_the_threshold_opens() -> None:
    snapshot = BreakerSnapshot(KEY)
    for expected in (1, 2):
        change = policy.after_failure(snapshot, TRANSIENT, T0, CONFIG, probe=False)
        assert change is not None and change.event is None
        snapshot = change.snapshot
        assert snapshot.consecutive_failures == expected
        assert (snapshot.last_error, snapshot.last_category) == ("down", "server_error")
    change = policy.after_failure(snapshot, TRANSIENT, at(5), CONFIG, probe=False)
    assert change is not None and change.event is not None
    assert change.snapshot.state is S.OPEN
    assert (change.snapshot.opened_at, change.snapshot.retry_at) == (at(5), at(65))
    assert (change.event.reason, change.event.category, change.event.message) == (
        "failure_threshold",
        "server_error",
        "down",
    )


def test_permanent_failures_count_nothing() -> None:
    closed = BreakerSnapshot(KEY, consecutive_failures=2)
    assert policy.after_failure(closed, PERMANENT, T0, CONFIG, probe=False) is None


def test_a_permanent_failure_of_a_probe_only_frees_its_slot() -> None:
    change = policy.after_failure(half_open(probes=1), PERMANENT, at(1), CONFIG, probe=True)
    assert change is not None and change.event is None
    assert (change.snapshot.state, change.snapshot.probes_in_flight) == (S.HALF_OPEN, 0)


@pytest.mark.parametrize(
    ("retry_after", "open_for"),
    [(None, 60.0), (30.0, 60.0), (600.0, 600.0), (10**6, 3600.0)],
    ids=["no-hint", "shorter-hint", "longer-hint", "capped-hint"],
)
def test_retry_after_lengthens_the_open_time_up_to_the_cap(
    retry_after: float | None, open_for: float
) -> None:
    failure = replace(TRANSIENT, category=ErrorCategory.RATE_LIMIT, retry_after_seconds=retry_after)
    last = BreakerSnapshot(KEY, consecutive_failures=2)
    change = policy.after_failure(last, failure, T0, CONFIG, probe=False)
    assert change is not None and change.snapshot.retry_at == at(open_for)


def test_a_failed_probe_reopens_and_releases_every_probe() -> None:
    hinted = replace(TRANSIENT, retry_after_seconds=90.0)
    change = policy.after_failure(half_open(probes=1), hinted, at(70), CONFIG, probe=True)
    assert change is not None and change.event is not None
    assert change.event.reason == "probe_failed"
    assert (change.snapshot.state, change.snapshot.probes_in_flight) == (S.OPEN, 0)
    assert (change.snapshot.opened_at, change.snapshot.retry_at) == (at(70), at(160))


def test_late_outcomes_change_nothing() -> None:
    # A call let through while closed ends after the breaker opened (or went half-open).
    assert policy.after_failure(opened(), TRANSIENT, at(1), CONFIG, probe=False) is None
    assert policy.after_success(opened(), at(1), CONFIG, probe=False) is None
    assert policy.after_failure(half_open(), TRANSIENT, at(1), CONFIG, probe=False) is None
    assert policy.after_success(half_open(), at(1), CONFIG, probe=False) is None
    # A probe ends after an operator forced the breaker open.
    forced = opened(forced=True)
    assert policy.after_success(forced, at(1), CONFIG, probe=True) is None


# -- successes and releases --------------------------------------------------------------------


def test_success_in_closed_resets_the_run_and_writes_nothing_when_there_is_none() -> None:
    assert policy.after_success(BreakerSnapshot(KEY), T0, CONFIG, probe=False) is None
    change = policy.after_success(
        BreakerSnapshot(KEY, consecutive_failures=2), T0, CONFIG, probe=False
    )
    assert change is not None and change.event is None
    assert change.snapshot.consecutive_failures == 0


def test_a_successful_probe_closes() -> None:
    change = policy.after_success(half_open(), at(61), CONFIG, probe=True)
    assert change is not None and change.event is not None
    assert change.event.reason == "probe_succeeded"
    snapshot = change.snapshot
    assert (snapshot.state, snapshot.consecutive_failures, snapshot.probes_in_flight) == (
        S.CLOSED,
        0,
        0,
    )
    assert (snapshot.opened_at, snapshot.retry_at, snapshot.probe_expires_at) == (None, None, None)


def test_releasing_a_probe_frees_its_slot_only() -> None:
    change = policy.release_probe(half_open(probes=2), at(1))
    assert change is not None and change.event is None
    assert (change.snapshot.state, change.snapshot.probes_in_flight) == (S.HALF_OPEN, 1)
    change = policy.release_probe(change.snapshot, at(2))
    assert change is not None and change.snapshot.probe_expires_at is None
    assert policy.release_probe(change.snapshot, at(3)) is None
    assert policy.release_probe(BreakerSnapshot(KEY), T0) is None
    assert policy.release_probe(half_open(), at(200), lease_expires_at=at(120)) is None


# -- operator actions ------------------------------------------------------------------------


@pytest.mark.parametrize("snapshot", [BreakerSnapshot(KEY), opened(), half_open()])
def test_reset_closes_from_any_state_and_is_recorded(snapshot: BreakerSnapshot) -> None:
    change = policy.reset(snapshot, at(5), "alice")
    assert change.snapshot.state is S.CLOSED and change.snapshot.consecutive_failures == 0
    assert change.event is not None
    assert (change.event.reason, change.event.actor) == ("reset", "alice")


@pytest.mark.parametrize("snapshot", [BreakerSnapshot(KEY), opened(), half_open()])
def test_force_open_isolates_until_reset(snapshot: BreakerSnapshot) -> None:
    change = policy.force_open(snapshot, at(5), "bob")
    forced = change.snapshot
    assert (forced.state, forced.forced_open, forced.retry_at) == (S.OPEN, True, None)
    assert forced.probes_in_flight == 0
    assert change.event is not None
    assert (change.event.reason, change.event.actor) == ("forced_open", "bob")
    assert policy.admit(forced, at(10**7), CONFIG).verdict is Verdict.REFUSE
    assert not policy.reset(forced, at(6), "bob").snapshot.forced_open
