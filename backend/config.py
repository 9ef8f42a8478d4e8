"""Bulwark's one typed configuration, read from the environment (or ``.env``) and validated at
start-up. Nothing reads the environment anywhere else; everything receives a ``Settings``."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from backend.core.breaker_state import BreakerConfig
from backend.core.retry_policy import RecoveryConfig

#: Routes used when no provider key is configured: the offline simulator.
SIMULATOR_ROUTES: dict[str, list[str]] = {
    "review": ["sim:reviewer"],
    "code": ["sim:coder"],
    "default": ["sim:general"],
}

#: The target each provider serves when keys are set but no routes are configured.
DEFAULT_PROVIDER_TARGETS: dict[str, str] = {
    "openai": "openai:gpt-4o-mini",
    "anthropic": "anthropic:claude-3-5-haiku-latest",
}


class Settings(BaseSettings):
    """Every knob, with the environment variable that sets it (``BULWARK_`` + field name in
    capitals, except the providers' own ``OPENAI_*`` / ``ANTHROPIC_*``)."""

    model_config = SettingsConfigDict(
        env_prefix="BULWARK_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    database_url: str = "sqlite+aiosqlite:///./bulwark.db"
    admin_token: SecretStr | None = None
    routes: Annotated[dict[str, list[str]], NoDecode] = Field(default_factory=dict)

    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "BULWARK_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "BULWARK_OPENAI_BASE_URL")
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "BULWARK_ANTHROPIC_API_KEY"),
    )
    anthropic_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "BULWARK_ANTHROPIC_BASE_URL"),
    )

    retry_max_retries: int = Field(default=3, ge=0, le=20)
    retry_initial_wait: float = Field(default=0.1, ge=0)
    retry_multiplier: float = Field(default=2.0, ge=1)
    retry_max_wait: float = Field(default=10.0, ge=0)
    retry_attempt_timeout: float = Field(default=30.0, gt=0)
    retry_after_ceiling: float = Field(default=60.0, ge=0)
    retry_budget_ratio: float = Field(default=0.2, ge=0)
    retry_budget_min: int = Field(default=10, ge=0)
    retry_budget_window: float = Field(default=10.0, gt=0)

    breaker_threshold: int = Field(default=5, ge=1)
    breaker_open_seconds: float = Field(default=60.0, gt=0)
    breaker_half_open_max_calls: int = Field(default=1, ge=1)
    breaker_probe_lease_seconds: float = Field(default=120.0, gt=0)
    breaker_cache_seconds: float = Field(default=0.5, ge=0, le=1.0)

    history_flush_seconds: float = Field(default=0.5, gt=0)
    history_buffer_limit: int = Field(default=10_000, ge=100)

    worker_concurrency: int = Field(default=4, ge=1)
    worker_lease_seconds: float = Field(default=30.0, gt=0)
    worker_poll_seconds: float = Field(default=0.5, gt=0)
    worker_grace_seconds: float = Field(default=30.0, ge=0)
    embedded_workers: bool = True
    """``bulwark serve`` runs workers in-process unless this is false (or --no-workers)."""

    task_deadline_seconds: float = Field(default=300.0, gt=0)
    task_max_deadline_seconds: float = Field(default=3600.0, gt=0)
    task_max_attempts: int = Field(default=3, ge=1)
    client_queued_limit: int = Field(default=100, ge=1)
    max_code_bytes: int = Field(default=256 * 1024, ge=1024)

    agents: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Extra agents as ``module:Class`` names (comma-separated), besides entry points."""
    admin_key_file: str = ".bulwark/admin.key"
    metrics_token: SecretStr | None = None
    log_format: str = Field(default="text", pattern="^(text|json)$")
    log_level: str = "INFO"

    sim_latency_ms: float = Field(default=0.0, ge=0)
    sim_faults: str = ""

    @field_validator("agents", mode="before")
    @classmethod
    def _split_agents(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("routes", mode="before")
    @classmethod
    def _parse_routes(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"BULWARK_ROUTES is not valid JSON: {exc.msg}") from None
        return value

    @field_validator("routes")
    @classmethod
    def _check_routes(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, targets in value.items():
            if not targets:
                raise ValueError(f"route {name!r} has no targets")
            for target in targets:
                provider, sep, model = target.partition(":")
                if not sep or not provider or not model:
                    raise ValueError(
                        f"route {name!r}: target {target!r} is not of the form provider:model"
                    )
        return value

    def effective_routes(self) -> dict[str, list[str]]:
        """The configured routes. Without ``BULWARK_ROUTES``: every route goes to the
        providers whose keys are set (OpenAI first, then Anthropic, so each falls back to the
        other), or to the offline simulator when no key is set."""
        if self.routes:
            return dict(self.routes)
        keyed = [
            target
            for provider, target in DEFAULT_PROVIDER_TARGETS.items()
            if getattr(self, f"{provider}_api_key") is not None
        ]
        if not keyed:
            return dict(SIMULATOR_ROUTES)
        return {name: list(keyed) for name in SIMULATOR_ROUTES}

    def recovery_config(self) -> RecoveryConfig:
        return RecoveryConfig(
            max_retries=self.retry_max_retries,
            initial_wait=self.retry_initial_wait,
            multiplier=self.retry_multiplier,
            max_wait=self.retry_max_wait,
            attempt_timeout=self.retry_attempt_timeout,
            retry_after_ceiling=self.retry_after_ceiling,
            budget_ratio=self.retry_budget_ratio,
            budget_min_retries=self.retry_budget_min,
            budget_window=self.retry_budget_window,
        )

    def breaker_config(self) -> BreakerConfig:
        return BreakerConfig(
            threshold=self.breaker_threshold,
            open_seconds=self.breaker_open_seconds,
            half_open_max_calls=self.breaker_half_open_max_calls,
            probe_lease_seconds=self.breaker_probe_lease_seconds,
            cache_seconds=self.breaker_cache_seconds,
        )


__all__ = ["DEFAULT_PROVIDER_TARGETS", "SIMULATOR_ROUTES", "Settings"]
