"""Builds an :class:`LLMGateway` from ``Settings``: database, breaker store, history, and
the providers whose keys are configured (the simulator is always there)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from backend.config import Settings
from backend.core.breaker_registry import BreakerRegistry
from backend.core.clock import SYSTEM_CLOCK, Clock
from backend.core.error_recovery import ErrorRecoveryManager
from backend.core.recovery_events import RecoveryListener
from backend.core.redact import register_secret
from backend.db.breaker_store import SqlBreakerStore
from backend.db.call_recorder import CallRecorder
from backend.db.engine import create_engine
from backend.db.migrate import upgrade_async
from backend.llm.gateway import LLMGateway
from backend.llm.history import HistorySink
from backend.llm.providers import anthropic_provider, openai_provider, sim
from backend.llm.providers.base import Provider
from backend.llm.routing import RouteTable
from backend.metrics import BreakerMetrics, BulwarkMetrics, MeteredHistory, RecoveryMetrics

log = logging.getLogger("bulwark.gateway")


def settings_providers(settings: Settings) -> list[Provider]:
    """The simulator, plus OpenAI and Anthropic when their keys are set."""
    providers: list[Provider] = [sim.from_settings(settings)]
    for factory in (openai_provider.from_settings, anthropic_provider.from_settings):
        provider = factory(settings)
        if provider is not None:
            providers.append(provider)
    return providers


async def create_gateway(
    settings: Settings,
    *,
    providers: Iterable[Provider] = (),
    listeners: Iterable[RecoveryListener] = (),
    clock: Clock = SYSTEM_CLOCK,
    migrate: bool | None = None,
    metrics: BulwarkMetrics | None = None,
) -> LLMGateway:
    """A gateway on ``settings.database_url``.

    ``metrics`` (one per process) makes the gateway feed the Prometheus metrics.
    ``providers`` adds to (or replaces, by name) the configured ones, e.g. a LangChain chat
    model. ``migrate`` brings the schema to the latest revision first; by default it does so
    on SQLite only (a fleet on PostgreSQL runs ``bulwark db upgrade`` once, before starting).
    """
    secrets = (
        settings.openai_api_key,
        settings.anthropic_api_key,
        settings.admin_token,
        settings.metrics_token,
    )
    for secret in secrets:
        if secret is not None:
            register_secret(secret.get_secret_value())
    chosen = {p.name: p for p in [*settings_providers(settings), *providers]}
    routes = RouteTable(settings.effective_routes())
    missing = sorted(routes.providers() - chosen.keys())
    if missing:
        log.warning(
            "BULWARK_ROUTES names providers that are not configured: %s; calls to their "
            "targets fail with invalid_request until their API keys are set or they are "
            "registered (providers= or register_provider)",
            ", ".join(missing),
        )
    engine = create_engine(settings.database_url)
    if migrate is None:
        migrate = engine.dialect.name == "sqlite"
    if migrate:
        await upgrade_async(settings.database_url)
    store = SqlBreakerStore(engine, config=settings.breaker_config(), clock=clock)
    recorder = CallRecorder(
        engine,
        flush_seconds=settings.history_flush_seconds,
        buffer_limit=settings.history_buffer_limit,
    )
    recorder.start()
    breakers = BreakerRegistry(store, settings.breaker_config(), clock=clock)
    history: HistorySink = recorder
    all_listeners = list(listeners)
    if metrics is not None:
        all_listeners.append(RecoveryMetrics(metrics))
        history = MeteredHistory(recorder, metrics)
        breakers.on_transition(BreakerMetrics(metrics))

    async def close_storage() -> None:
        await recorder.aclose()
        await store.aclose()
        await engine.dispose()

    return LLMGateway(
        routes=routes,
        providers=chosen.values(),
        manager=ErrorRecoveryManager(
            settings.recovery_config(), clock=clock, listeners=all_listeners
        ),
        breakers=breakers,
        history=history,
        clock=clock,
        on_close=[close_storage],
    )


__all__ = ["create_gateway", "settings_providers"]
