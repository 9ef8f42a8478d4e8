"""Every Prometheus metric Bulwark exports, defined on a registry passed in.

Nothing here is global: :class:`BulwarkMetrics` registers its metrics on the
``CollectorRegistry`` it is given (create one per process and share it between the API and
the in-process workers; a second instance on the same registry raises, as a duplicate would).
The listeners in :mod:`backend.metrics.listeners` feed it from Bulwark's events; the core
never imports ``prometheus_client``.

Metrics (label values are bounded: no task, call or request ids and no raw paths; a missing
value is ``"none"``):

``bulwark_llm_attempts_total{target,agent,outcome,category}`` (counter)
    Requests sent to a provider, or refused by its breaker: one per ``llm_attempts`` row.
    ``target`` is ``provider:model``; ``agent`` the agent that made the call; ``outcome``
    ``success`` | ``failure`` | ``refused``; ``category`` the error category of a failure
    (``server_error``, ``rate_limit``, ``circuit_open``, ``invalid_output``, ...), ``none``
    on success.
``bulwark_llm_retries_total{target,agent}`` (counter)
    Attempts followed by another attempt on the same target: the recovery manager's
    retries and the gateway's re-ask after an answer that did not fit the schema.
``bulwark_llm_call_duration_seconds{target,agent}`` (histogram, 0.05 s .. 120 s)
    Wall time of one logical gateway call, retries, waits and fallbacks included. ``target``
    is the target that answered, or the last one tried when the call failed (``none`` when
    no target was tried). Calls answered from a task's replay are not observed.
``bulwark_breaker_state{target}`` (gauge)
    The breaker of ``target``: 0 closed, 1 half_open, 2 open (``STATE_GAUGE``). Set on every
    transition this process writes, and from the store when the snapshots are observed.
``bulwark_breaker_transitions_total{target,to_state}`` (counter)
    Breaker transitions written by this process; ``to_state`` ``open`` | ``half_open`` |
    ``closed``.
``bulwark_retry_budget_exhausted_total{target}`` (counter)
    Retries skipped because the process's retry budget for the window was spent: the call
    gave up although a retry was allowed by the policy.
``bulwark_fallbacks_total{route,from_target,to_target}`` (counter)
    Hand-overs from one target of a route to the next within a call.
``bulwark_tasks_total{type,status}`` (counter)
    Tasks finished by a worker; ``status`` ``succeeded`` | ``failed`` | ``cancelled``.
``bulwark_task_duration_seconds{type}`` (histogram, 0.5 s .. 1 h)
    Time from a worker's claim of a task to its end.
``bulwark_tasks_queued`` (gauge)
    Tasks waiting for a worker, as last counted in the database.
``bulwark_http_requests_total{method,route,status}`` (counter)
    HTTP requests served; ``route`` is the route template (``/v1/tasks/{task_id}``), or
    ``unmatched`` when no route matched; ``method`` is ``OTHER`` for non-standard methods.
``bulwark_http_request_duration_seconds{method,route}`` (histogram, 5 ms .. 30 s)
    Time to serve an HTTP request, body included.

Gauges in multiprocess mode (see :mod:`backend.metrics.multiprocess`) report the value most
recently written by any process of the host: the breaker state describes a breaker shared by
the fleet, so the latest write is the truth even after its writer exited (``mostrecent``);
the queue length is only meaningful while the processes counting it live (``livemostrecent``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from backend.metrics.multiprocess import ensure_multiprocess_ready

#: Label value for anything unknown or missing (no agent, no error category, no target).
NONE = "none"

LLM_CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
TASK_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def label(value: object | None) -> str:
    """A label value: ``"none"`` for ``None`` or empty, the string value otherwise."""
    if value is None:
        return NONE
    text = str(value)
    return text if text else NONE


class BulwarkMetrics:
    """Bulwark's metrics, registered on ``registry`` (one instance per registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        ensure_multiprocess_ready()
        self.registry = registry
        self.llm_attempts = Counter(
            "bulwark_llm_attempts",
            "Requests sent to an LLM provider, or refused by its breaker.",
            ["target", "agent", "outcome", "category"],
            registry=registry,
        )
        self.llm_retries = Counter(
            "bulwark_llm_retries",
            "LLM attempts followed by another attempt on the same target.",
            ["target", "agent"],
            registry=registry,
        )
        self.llm_call_duration = Histogram(
            "bulwark_llm_call_duration_seconds",
            "Wall time of one gateway call, retries and fallbacks included.",
            ["target", "agent"],
            buckets=LLM_CALL_BUCKETS,
            registry=registry,
        )
        self.breaker_state = Gauge(
            "bulwark_breaker_state",
            "Circuit breaker state per target: 0 closed, 1 half_open, 2 open.",
            ["target"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.breaker_transitions = Counter(
            "bulwark_breaker_transitions",
            "Circuit breaker transitions written by this process.",
            ["target", "to_state"],
            registry=registry,
        )
        self.retry_budget_exhausted = Counter(
            "bulwark_retry_budget_exhausted",
            "Retries skipped because the retry budget of the window was spent.",
            ["target"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "bulwark_fallbacks",
            "Hand-overs from one target of a route to the next within a call.",
            ["route", "from_target", "to_target"],
            registry=registry,
        )
        self.tasks = Counter(
            "bulwark_tasks",
            "Tasks finished by a worker, by type and final status.",
            ["type", "status"],
            registry=registry,
        )
        self.task_duration = Histogram(
            "bulwark_task_duration_seconds",
            "Time from a worker's claim of a task to its end.",
            ["type"],
            buckets=TASK_BUCKETS,
            registry=registry,
        )
        self.tasks_queued = Gauge(
            "bulwark_tasks_queued",
            "Tasks waiting for a worker, as last counted in the database.",
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.http_requests = Counter(
            "bulwark_http_requests",
            "HTTP requests served, by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_request_duration = Histogram(
            "bulwark_http_request_duration_seconds",
            "Time to serve an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )


__all__ = ["HTTP_BUCKETS", "LLM_CALL_BUCKETS", "NONE", "TASK_BUCKETS", "BulwarkMetrics", "label"]
