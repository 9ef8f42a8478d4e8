"""Serving the metrics: the body of ``GET /metrics``, its access rule, and an ASGI middleware
that measures HTTP requests by route template.

The route is labelled with its template (``/v1/tasks/{task_id}``), never the raw path, so a
task id or a breaker key never becomes a label value; requests no route matched share the
label ``unmatched``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Collection

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.config import Settings
from backend.metrics.definitions import BulwarkMetrics
from backend.metrics.multiprocess import collecting_registry, multiprocess_dir

UNMATCHED = "unmatched"
"""The ``route`` label of a request that no route matched (404)."""

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def render_metrics(registry: CollectorRegistry, *, accept: str | None = None) -> tuple[bytes, str]:
    """The ``/metrics`` body and its content type.

    In multiprocess mode the body sums every process of the host (read from the files) and
    ``registry`` is not read; otherwise it is ``registry``. ``accept`` (the request's Accept
    header) selects OpenMetrics when the scraper asks for it.
    """
    directory = multiprocess_dir()
    source = collecting_registry(directory) if directory is not None else registry
    encoder, content_type = choose_encoder(accept or "")
    return encoder(source), content_type


def metrics_authorized(settings: Settings, authorization: str | None) -> bool:
    """Whether a scrape may read ``/metrics``: always when ``BULWARK_METRICS_TOKEN`` is unset,
    else only with ``Authorization: Bearer <token>`` (compared in constant time)."""
    if settings.metrics_token is None:
        return True
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    expected = settings.metrics_token.get_secret_value()
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


def route_template(scope: Scope) -> str:
    """The template of the route that handled the request, as the router left it in
    ``scope`` (FastAPI routers flatten ``include_router`` prefixes into it). Inside a mounted
    sub-application the template is the sub-application's own (the mount's prefix may hold
    path parameters, so it is not added)."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED


class HttpMetricsMiddleware:
    """Counts and times HTTP requests by method, route template and status.

    Add it outside the app's routing (``app.add_middleware(HttpMetricsMiddleware,
    metrics=metrics)``). A request whose handler raises counts as 500; ``skip_routes`` lists
    route templates not to measure (e.g. ``{"/metrics"}``).
    """

    def __init__(
        self, app: ASGIApp, metrics: BulwarkMetrics, skip_routes: Collection[str] = ()
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.skip_routes = frozenset(skip_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, duration: float) -> None:
        route = route_template(scope)
        if route in self.skip_routes:
            return
        method = str(scope.get("method", "")).upper()
        method = method if method in METHODS else "OTHER"
        self.metrics.http_requests.labels(method, route, str(status)).inc()
        self.metrics.http_request_duration.labels(method, route).observe(duration)


__all__ = [
    "METHODS",
    "UNMATCHED",
    "HttpMetricsMiddleware",
    "metrics_authorized",
    "render_metrics",
    "route_template",
]
