"""The metrics listeners, each on a fresh registry: the right series, the right labels, and
label values that stay bounded."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

import backend.metrics as metrics_pkg
from backend.config import Settings
from backend.core.breaker_registry import BreakerRegistry
from backend.core.breaker_state import BreakerConfig, BreakerEvent, BreakerSnapshot, BreakerState
from backend.core.error_recovery import ErrorRecoveryManager
from backend.core.errors import Classification, ErrorCategory, TransientError
from backend.core.recovery_events import GiveUpEvent
from backend.core.retry_policy import GiveUpReason, RecoveryConfig
from backend.llm.history import AttemptRecord, CallRecord, MemoryHistorySink
from backend.metrics import (
    BreakerMetrics,
    BulwarkMetrics,
    HttpMetricsMiddleware,
    MeteredHistory,
    RecoveryMetrics,
    TaskMetrics,
    metrics_authorized,
    observe_breaker_snapshots,
    render_metrics,
)
from backend.metrics.multiprocess import (
    ENV_VAR,
    ensure_multiprocess_ready,
    mark_process_dead,
    multiprocess_dir,
    reset_multiprocess_dir,
)
from backend.testing import FakeClock

OPENAI = "openai:gpt-4o-mini"
ANTHROPIC = "anthropic:claude-haiku-4-5"
NOW = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> BulwarkMetrics:
    return BulwarkMetrics(registry)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist."""
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def series(registry: CollectorRegistry, name: str) -> list[dict[str, str]]:
    """The label sets of every sample of ``name``."""
    return [
        dict(sample.labels)
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name
    ]


def attempt(n: int, target: str, outcome: str, decision: str, **kw: Any) -> AttemptRecord:
    return AttemptRecord("c1", n, target, NOW, 10.0, outcome, decision=decision, **kw)


def call(**kw: Any) -> CallRecord:
    values: dict[str, Any] = {
        "id": "c1",
        "context": "reviewer/review",
        "started_at": NOW,
        "finished_at": NOW,
        "duration_ms": 1500.0,
        "outcome": "success",
        "attempts": 1,
        "agent": "reviewer",
        "route": "review",
        "target": OPENAI,
    }
    values.update(kw)
    return CallRecord(**values)


def test_every_metric_is_defined_with_its_exact_name(registry: CollectorRegistry) -> None:
    BulwarkMetrics(registry)
    names = {family.name for family in registry.collect()}
    assert names == {
        "bulwark_llm_attempts",
        "bulwark_llm_retries",
        "bulwark_llm_call_duration_seconds",
        "bulwark_breaker_state",
        "bulwark_breaker_transitions",
        "bulwark_retry_budget_exhausted",
        "bulwark_fallbacks",
        "bulwark_tasks",
        "bulwark_task_duration_seconds",
        "bulwark_tasks_queued",
        "bulwark_http_requests",
        "bulwark_http_request_duration_seconds",
    }
    body, _ = render_metrics(registry)
    for exposed in (
        "bulwark_llm_attempts_total",
        "bulwark_breaker_transitions_total",
        "bulwark_http_requests_total",
        "bulwark_tasks_queued 0.0",
    ):
        assert exposed.encode() in body


def test_a_second_instance_on_one_registry_is_refused(metrics: BulwarkMetrics) -> None:
    with pytest.raises(ValueError, match="Duplicated"):
        BulwarkMetrics(metrics.registry)


def test_public_surface() -> None:
    assert sorted(metrics_pkg.__all__) == sorted(
        [
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
    )


# --- MeteredHistory: attempts, retries, durations, fallbacks from the ledger -----------------


def test_retry_then_success_counts_both_attempts_and_one_retry(
    metrics: BulwarkMetrics, registry: CollectorRegistry
) -> None:
    inner = MemoryHistorySink()
    sink = MeteredHistory(inner, metrics)
    attempts = [
        attempt(1, OPENAI, "failure", "retry", category="server_error"),
        attempt(2, OPENAI, "success", "succeed"),
    ]
    sink.submit(call(attempts=2), attempts)
    labels = {"target": OPENAI, "agent": "reviewer"}
    assert (
        value(
            registry,
            "bulwark_llm_attempts_total",
            **labels,
            outcome="failure",
            category="server_error",
        )
        == 1
    )
    assert (
        value(registry, "bulwark_llm_attempts_total", **labels, outcome="success", category="none")
        == 1
    )
    assert value(registry, "bulwark_llm_retries_total", **labels) == 1
    assert value(registry, "bulwark_llm_call_duration_seconds_count", **labels) == 1
    assert value(registry, "bulwark_llm_call_duration_seconds_sum", **labels) == 1.5
    assert inner.attempts == attempts and len(inner.calls) == 1


def test_fallback_is_counted_from_the_target_that_gave_up_to_the_next(
    metrics: BulwarkMetrics, registry: CollectorRegistry
) -> None:
    sink = MeteredHistory(None, metrics)
    attempts = [
        attempt(1, OPENAI, "failure", "retry", category="server_error"),
        attempt(2, OPENAI, "failure", "fallback", category="server_error"),
        attempt(3, ANTHROPIC, "success", "succeed"),
    ]
    sink.submit(call(target=ANTHROPIC, attempts=3), attempts)
    assert (
        value(
            registry,
            "bulwark_fallbacks_total",
            route="review",
            from_target=OPENAI,
            to_target=ANTHROPIC,
        )
        == 1
    )
    assert series(registry, "bulwark_fallbacks_total") == [
        {"route": "review", "from_target": OPENAI, "to_target": ANTHROPIC}
    ]
    assert value(registry, "bulwark_llm_retries_total", target=OPENAI, agent="reviewer") == 1
    durations = series(registry, "bulwark_llm_call_duration_seconds_count")
    assert durations == [{"target": ANTHROPIC, "agent": "reviewer"}]


def test_a_route_exhausted_on_its_last_target_is_no_fallback(
    metrics: BulwarkMetrics, registry: CollectorRegistry
) -> None:
    sink = MeteredHistory(None, metrics)
    attempts = [
        attempt(1, OPENAI, "refused", "fallback", category="circuit_open"),
        attempt(2, ANTHROPIC, "failure", "fallback", category="auth_error"),
    ]
    sink.submit(call(target=None, outcome="failure", attempts=2), attempts)
    assert series(registry, "bulwark_fallbacks_total") == [
        {"route": "review", "from_target": OPENAI, "to_target": ANTHROPIC}
    ]
    assert (
        value(
            registry,
            "bulwark_llm_attempts_total",
            target=OPENAI,
            agent="reviewer",
            outcome="refused",
            category="circuit_open",
        )
        == 1
    )
    assert series(registry, "bulwark_llm_call_duration_seconds_count") == [
        {"target": "none", "agent": "reviewer"}
    ]


def test_unknown_agent_and_missing_route_are_labelled_none(
    metrics: BulwarkMetrics, registry: CollectorRegistry
) -> None:
    sink = MeteredHistory(None, metrics)
    attempts = [
        attempt(1, OPENAI, "failure", "fallback", category="timeout"),
        attempt(2, ANTHROPIC, "success", "succeed"),
    ]
    sink.submit(call(agent=None, route=None, target=ANTHROPIC), attempts)
    assert (
        value(
            registry,
            "bulwark_llm_attempts_total",
            target=OPENAI,
            agent="none",
            outcome="failure",
            category="timeout",
        )
        == 1
    )
    assert series(registry, "bulwark_fallbacks_total") == [
        {"route": "none", "from_target": OPENAI, "to_target": ANTHROPIC}
    ]


def test_label_values_stay_bounded_whatever_the_ids(
    metrics: BulwarkMetrics, registry: CollectorRegistry
) -> None:
    sink = MeteredHistory(None, metrics)
    for n in range(50):
        call_id = f"call-{n}"
        sink.submit(
            call(id=call_id, task_id=f"task-{n}", context=f"reviewer/review/{n}"),
            [AttemptRecord(call_id, 1, OPENAI, NOW, 5.0, "success", decision="succeed")],
        )
    attempts = series(registry, "bulwark_llm_attempts_total")
    assert attempts == [
        {"target": OPENAI, "agent": "reviewer", "outcome": "success", "category": "none"}
    ]
    assert value(registry, "bulwark_llm_attempts_total", **attempts[0]) == 50
    every_value = {
        v for family in registry.collect() for s in family.samples for v in s.labels.values()
    }
    assert not any("task-" in v or "call-" in v for v in every_value)


def test_replayed_calls_count_no_duration(
    metrics: BulwarkMetrics, registry: CollectorRegistry
) -> None:
    MeteredHistory(None, metrics).submit(call(replayed=True, attempts=0, duration_ms=0.0), [])
    assert series(registry, "bulwark_llm_call_duration_seconds_count") == []


async def test_flush_goes_to_the_inner_sink(metrics: BulwarkMetrics) -> None:
    class Counting(MemoryHistorySink):
        async def flush(self) -> int:
            return 7

    assert await MeteredHistory(Counting(), metrics).flush() == 7
    assert await MeteredHistory(None, metrics).flush() == 0


def test_a_failure_to_observe_still_keeps_the_history(
    metrics: BulwarkMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    inner = MemoryHistorySink()
    broken = call(duration_ms="not a number")  # a corrupt record: observing it raises
    MeteredHistory(inner, metrics).submit(broken, [])
    assert inner.calls == [broken]
    assert "could not observe call c1" in caplog.text


# --- RecoveryMetrics: the retry budget ------------------------------------------------------


def give_up(reason: GiveUpReason, key: str | None = OPENAI) -> GiveUpEvent:
    c = Classification(ErrorCategory.SERVER_ERROR, True)
    return GiveUpEvent("reviewer/review", 1, reason, c, key)


def test_budget_exhaustion_is_counted_per_target(
    metrics: BulwarkMetrics, registry: CollectorRegistry
) -> None:
    listener = RecoveryMetrics(metrics)
    listener.on_give_up(give_up(GiveUpReason.BUDGET))
    listener.on_give_up(give_up(GiveUpReason.BUDGET, key=None))
    for other in (GiveUpReason.EXHAUSTED, GiveUpReason.PERMANENT, GiveUpReason.CIRCUIT_OPEN):
        listener.on_give_up(give_up(other))
    assert value(registry, "bulwark_retry_budget_exhausted_total", target=OPENAI) == 1
    assert value(registry, "bulwark_retry_budget_exhausted_total", target="none") == 1
    assert len(series(registry, "bulwark_retry_budget_exhausted_total")) == 2


async def test_a_real_manager_reports_a_spent_budget(
    metrics: BulwarkMetrics, registry: CollectorRegistry
) -> None:
    clock = FakeClock()
    config = RecoveryConfig(budget_ratio=0.0, budget_min_retries=0)
    manager = ErrorRecoveryManager(config, clock=clock, listeners=[RecoveryMetrics(metrics)])
    breaker = BreakerRegistry(clock=clock).get(OPENAI)

    async def down() -> str:
        raise TimeoutError("no answer")

    with pytest.raises(TransientError, match="retry budget"):
        await manager.execute_with_retry(down, breaker=breaker)
    assert value(registry, "bulwark_retry_budget_exhausted_total", target=OPENAI) == 1


# --- BreakerMetrics: the state gauge and transitions -----------------------------------------


def event(source: BreakerState, to: BreakerState, key: str = OPENAI) -> BreakerEvent:
    return BreakerEvent(key, source, to, "test", "system", NOW)


@pytest.mark.parametrize(
    ("source", "to", "gauge"),
    [
        (BreakerState.CLOSED, BreakerState.OPEN, 2),
        (BreakerState.OPEN, BreakerState.HALF_OPEN, 1),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED, 0),
        (BreakerState.HALF_OPEN, BreakerState.OPEN, 2),
    ],
)
def test_each_transition_sets_the_gauge_of_its_state(
    metrics: BulwarkMetrics,
    registry: CollectorRegistry,
    source: BreakerState,
    to: BreakerState,
    gauge: int,
) -> None:
    BreakerMetrics(metrics)(event(source, to))
    assert registry.get_sample_value("bulwark_breaker_state", {"target": OPENAI}) == gauge
    assert value(registry, "bulwark_breaker_transitions_total", target=OPENAI, to_state=to) == 1


def test_self_moves_set_the_gauge_but_count_no_transition(
    metrics: BulwarkMetrics, registry: CollectorRegistry
) -> None:
    BreakerMetrics(metrics)(event(BreakerState.CLOSED, BreakerState.CLOSED))
    assert registry.get_sample_value("bulwark_breaker_state", {"target": OPENAI}) == 0
    assert series(registry, "bulwark_breaker_transitions_total") == []


async def test_a_real_breaker_walks_the_gauge_through_every_state(
    metrics: BulwarkMetrics, registry: CollectorRegistry
) -> None:
    clock = FakeClock()
    breakers = BreakerRegistry(config=BreakerConfig(threshold=1, open_seconds=10), clock=clock)
    breakers.on_transition(BreakerMetrics(metrics))
    breaker = breakers.get(OPENAI)

    def state() -> float | None:
        return registry.get_sample_value("bulwark_breaker_state", {"target": OPENAI})

    failure = Classification(ErrorCategory.SERVER_ERROR, True)
    await breaker.record_failure(await breaker.acquire(), failure)
    assert state() == 2
    clock.advance(10)
    probe = await breaker.acquire()
    assert state() == 1
    await breaker.record_success(probe)
    assert state() == 0
    for to in ("open", "half_open", "closed"):
        assert value(registry, "bulwark_breaker_transitions_total", target=OPENAI, to_state=to)


def test_snapshots_set_the_gauge_of_breakers_other_processes_moved(
    metrics: BulwarkMetrics, registry: CollectorRegistry
) -> None:
    observe_breaker_snapshots(
        metrics,
        [
            BreakerSnapshot(OPENAI, BreakerState.OPEN),
            BreakerSnapshot(ANTHROPIC, BreakerState.HALF_OPEN),
        ],
    )
    assert registry.get_sample_value("bulwark_breaker_state", {"target": OPENAI}) == 2
    assert registry.get_sample_value("bulwark_breaker_state", {"target": ANTHROPIC}) == 1
    assert series(registry, "bulwark_breaker_transitions_total") == []


# --- TaskMetrics ------------------------------------------------------------------------------


def test_task_hooks(metrics: BulwarkMetrics, registry: CollectorRegistry) -> None:
    tasks = TaskMetrics(metrics)
    tasks.task_finished("review", "succeeded", 12.0)
    tasks.task_finished("review", "failed", 3.0)
    tasks.task_finished("code", "succeeded", 40.0)
    tasks.set_queued(5)
    assert value(registry, "bulwark_tasks_total", type="review", status="succeeded") == 1
    assert value(registry, "bulwark_tasks_total", type="review", status="failed") == 1
    assert value(registry, "bulwark_task_duration_seconds_count", type="review") == 2
    assert value(registry, "bulwark_task_duration_seconds_sum", type="review") == 15.0
    assert value(registry, "bulwark_tasks_queued") == 5
    tasks.set_queued(0)
    assert value(registry, "bulwark_tasks_queued") == 0


# --- HTTP middleware and exposition ------------------------------------------------------------


@pytest.fixture
def app(metrics: BulwarkMetrics) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/tasks/{task_id}")
    async def get_task(task_id: str) -> dict[str, str]:
        return {"id": task_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    @app.get("/metrics")
    async def scrape() -> None:
        return None

    app.add_middleware(HttpMetricsMiddleware, metrics=metrics, skip_routes={"/metrics"})
    return app


async def test_http_requests_are_labelled_by_route_template(
    app: FastAPI, registry: CollectorRegistry
) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for task_id in ("a1", "b2", "c3"):
            assert (await client.get(f"/v1/tasks/{task_id}")).status_code == 200
        assert (await client.get("/no/such/path/123")).status_code == 404
        assert (await client.post("/v1/tasks/a1")).status_code == 405
        assert (await client.get("/boom")).status_code == 500
        await client.get("/metrics")
    requests = "bulwark_http_requests_total"
    route = "/v1/tasks/{task_id}"
    assert value(registry, requests, method="GET", route=route, status="200") == 3
    assert value(registry, requests, method="GET", route="unmatched", status="404") == 1
    assert value(registry, requests, method="POST", route=route, status="405") == 1
    assert value(registry, requests, method="GET", route="/boom", status="500") == 1
    duration = "bulwark_http_request_duration_seconds_count"
    assert value(registry, duration, method="GET", route=route) == 3
    routes = {labels["route"] for labels in series(registry, requests)}
    assert routes == {route, "unmatched", "/boom"}


def test_render_negotiates_openmetrics(metrics: BulwarkMetrics) -> None:
    TaskMetrics(metrics).set_queued(3)
    body, content_type = render_metrics(metrics.registry)
    assert content_type.startswith("text/plain")
    assert b"bulwark_tasks_queued 3.0" in body
    body, content_type = render_metrics(
        metrics.registry, accept="application/openmetrics-text; version=1.0.0"
    )
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


@pytest.mark.parametrize(
    ("token", "header", "allowed"),
    [
        (None, None, True),
        ("s3cret-metrics-token", None, False),
        ("s3cret-metrics-token", "Bearer wrong", False),
        ("s3cret-metrics-token", "Basic s3cret-metrics-token", False),
        ("s3cret-metrics-token", "Bearer s3cret-metrics-token", True),
        ("s3cret-metrics-token", "bearer s3cret-metrics-token", True),
    ],
)
def test_metrics_token(token: str | None, header: str | None, allowed: bool) -> None:
    settings = Settings(metrics_token=SecretStr(token) if token else None)
    assert metrics_authorized(settings, header) is allowed


# --- multiprocess helpers in a single process ---------------------------------------------------


def test_multiprocess_helpers_are_no_ops_when_it_is_off(tmp_path: Path) -> None:
    assert multiprocess_dir() is None
    ensure_multiprocess_ready()
    mark_process_dead()
    assert reset_multiprocess_dir() == 0


def test_multiprocess_asked_too_late_fails_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match="not a directory"):
        BulwarkMetrics(CollectorRegistry())
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(RuntimeError, match="before starting Python"):
        BulwarkMetrics(CollectorRegistry())


def test_reset_removes_the_files_of_earlier_runs(tmp_path: Path) -> None:
    for name in ("counter_11.db", "gauge_livemostrecent_11.db", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert reset_multiprocess_dir(tmp_path) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
