"""The FastAPI application: :func:`create_app` builds it from ``Settings`` and an agent
registry; nothing happens at import time.

Its lifespan opens the database (migrating SQLite to the latest schema; PostgreSQL
deployments run ``bulwark db upgrade`` once), builds the stores, the LLM gateway and the
services, starts the embedded worker when ``settings.embedded_workers`` is true (sharing the
gateway), and closes all of it on shutdown. Everything a request needs is in
``app.state.bulwark`` (:class:`backend.api.deps.AppState`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry

from agents.registry import AgentRegistry
from backend.api.deps import AppState
from backend.api.embedded import embedded_worker
from backend.api.errors import install_error_handlers
from backend.api.middleware import BodyLimitMiddleware, CatchAllMiddleware
from backend.api.observers import shared_state_observer
from backend.api.routes import admin, dashboard, health
from backend.api.routes import metrics as metrics_route
from backend.api.routes.tasks import tasks_router
from backend.config import Settings
from backend.db.engine import create_engine
from backend.db.key_store import SqlApiKeyStore
from backend.db.migrate import upgrade_async
from backend.db.task_store import SqlTaskStore
from backend.llm.factory import create_gateway
from backend.logging_setup import RequestContextMiddleware
from backend.metrics import BulwarkMetrics, HttpMetricsMiddleware
from backend.services.breakers import BreakerService
from backend.services.health import HealthService
from backend.services.history import HistoryService
from backend.services.keys import KeyService
from backend.services.stats import StatsService
from backend.services.tasks import TaskRules, TaskService


def _version() -> str:
    try:
        return version("bulwark")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def _lifespan(
    settings: Settings, registry: AgentRegistry, metrics: BulwarkMetrics
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            engine = create_engine(settings.database_url)
            stack.push_async_callback(engine.dispose)
            if engine.dialect.name == "sqlite":
                await upgrade_async(settings.database_url)
            gateway = await create_gateway(settings, migrate=False, metrics=metrics)
            stack.push_async_callback(gateway.aclose)
            await stack.enter_async_context(
                shared_state_observer(engine, gateway.breakers.store, metrics)
            )
            store = SqlTaskStore(engine)
            wake: Callable[[], None] | None = None
            if settings.embedded_workers:
                worker = await stack.enter_async_context(
                    embedded_worker(
                        settings,
                        registry=registry,
                        gateway=gateway,
                        store=store,
                        engine=engine,
                        metrics=metrics,
                    )
                )
                wake = worker.wake
            history = HistoryService(engine)
            token = settings.admin_token.get_secret_value() if settings.admin_token else None
            app.state.bulwark = AppState(
                settings=settings,
                registry=registry,
                tasks=TaskService(
                    store,
                    registry,
                    TaskRules.from_settings(settings),
                    history=history,
                    on_submitted=wake,
                ),
                history=history,
                stats=StatsService(engine),
                breakers=BreakerService(gateway.breakers.store, gateway.breakers.config),
                keys=KeyService(SqlApiKeyStore(engine), admin_token=token),
                health=HealthService(engine),
            )
            yield

    return lifespan


def routers(registry: AgentRegistry, settings: Settings) -> list[APIRouter]:
    """Every router of the API, in order. ``GET /metrics`` and ``GET /dashboard`` are added
    here when their modules exist (they need nothing from ``app.state``)."""
    return [
        health.router,
        tasks_router(registry, max_deadline=settings.task_max_deadline_seconds),
        admin.router,
        metrics_route.router,
        dashboard.router,
    ]


def create_app(
    settings: Settings | None = None,
    *,
    registry: AgentRegistry | None = None,
    metrics: BulwarkMetrics | None = None,
) -> FastAPI:
    """The Bulwark REST API (see design.md, "REST API"). ``metrics`` defaults to a registry of
    the app's own (one per process: share it with anything else that reports metrics)."""
    settings = settings if settings is not None else Settings()
    registry = registry if registry is not None else AgentRegistry.discover(settings.agents)
    metrics = metrics if metrics is not None else BulwarkMetrics(CollectorRegistry())
    app = FastAPI(
        title="Bulwark",
        version=_version(),
        description="Code-review and code-writing tasks run by LLM agents, with retries, "
        'circuit breakers and fallback routes. Errors are `{"error": {"code", "message"}}`.',
        lifespan=_lifespan(settings, registry, metrics),
    )
    app.state.metrics = metrics
    install_error_handlers(app, registry.types())
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_code_bytes)
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics, skip_routes={"/metrics"})
    app.add_middleware(RequestContextMiddleware)  # outermost: every log line has the request id
    for router in routers(registry, settings):
        app.include_router(router)
    return app


__all__ = ["create_app", "routers"]
