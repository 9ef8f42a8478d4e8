"""LiteLLM's Router, configured as close to the common settings as it allows.

* One deployment per target (``openai/<model>`` at the fake server's base URL), the primary's
  model group falling back to the backup's when there is one.
* ``num_retries=3``, ``timeout`` = the attempt timeout; LiteLLM chooses its own backoff.
* The breaker is LiteLLM's cooldown: ``cooldown_time`` = the open time and, because a lone
  deployment is never cooled down otherwise, an ``allowed_fails_policy`` allowing
  threshold - 1 failures of each transient kind (timeout, 429, 500, 502, 503), so the
  threshold-th failure cools the deployment down.
* Kept off the internet: ``LITELLM_LOCAL_MODEL_COST_MAP=True`` before the import (else it
  downloads the model cost map), telemetry off, and the bench's audit hook refuses any
  connection outside 127.0.0.1 (:func:`bench.common.guard_network`).
"""

from __future__ import annotations

import os
from typing import Any

from bench.common import API_KEY, MESSAGES, MODEL, guard_network
from bench.contenders.base import Contender, Outcome

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("LITELLM_TELEMETRY", "False")
guard_network()


def _import_litellm(max_connections: int | None) -> Any:
    """Import LiteLLM (its aiohttp connection limits are read from the environment at
    import: a process that imported it already keeps the limits it had)."""
    if max_connections is not None:
        os.environ["AIOHTTP_CONNECTOR_LIMIT"] = str(max_connections)
        os.environ["AIOHTTP_CONNECTOR_LIMIT_PER_HOST"] = str(max_connections)
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return litellm


PRIMARY = "primary"
BACKUP = "backup"
_REFUSALS = ("No deployments available", "cooldown")


def _is_refusal(exc: BaseException) -> bool:
    text = str(exc)
    return type(exc).__name__ == "RouterRateLimitError" or any(r in text for r in _REFUSALS)


class LiteLLMRouter(Contender):
    name = "litellm_router"
    label = "LiteLLM Router"
    has_breaker = True
    has_fallback = True
    notes = (
        "cooldown as breaker: allowed_fails_policy (threshold-1 per transient kind), "
        "cooldown_time = open time; LiteLLM's own backoff",
    )

    async def start(self) -> None:
        _import_litellm(self.spec.max_connections)
        from litellm.router import Router
        from litellm.types.router import AllowedFailsPolicy

        s = self.spec.settings
        allowed = s.breaker_threshold - 1
        policy = AllowedFailsPolicy(
            TimeoutErrorAllowedFails=allowed,
            RateLimitErrorAllowedFails=allowed,
            InternalServerErrorAllowedFails=allowed,
            ServiceUnavailableErrorAllowedFails=allowed,
            BadGatewayErrorAllowedFails=allowed,
        )
        deployments: list[dict[str, Any]] = []
        for group, url in ((PRIMARY, self.spec.primary_url), (BACKUP, self.spec.fallback_url)):
            if url is None:
                continue
            params: dict[str, Any] = {
                "model": f"openai/{MODEL}",
                "api_base": url,
                "api_key": API_KEY,
                "timeout": s.attempt_timeout,
            }
            deployments.append({"model_name": group, "litellm_params": params})
        options: dict[str, Any] = {}
        if self.spec.fallback_url is not None:
            options["fallbacks"] = [{PRIMARY: [BACKUP]}]
        self.router = Router(
            model_list=deployments,
            num_retries=s.max_retries,
            timeout=s.attempt_timeout,
            cooldown_time=s.open_seconds,
            allowed_fails_policy=policy,
            **options,
        )
        self._primary_ids = self._deployment_ids(PRIMARY)
        self._backup_ids = self._deployment_ids(BACKUP)

    def _deployment_ids(self, group: str) -> set[str]:
        ids = set()
        for deployment in self.router.registry().all():
            if deployment.get("model_name") == group:
                info = deployment.get("model_info") or {}
                if info.get("id") is not None:
                    ids.add(str(info["id"]))
        return ids

    async def call(self, budget: float | None = None) -> Outcome:
        options: dict[str, Any] = {}
        if budget is not None:
            options["timeout"] = budget
        try:
            response = await self.router.acompletion(model=PRIMARY, messages=MESSAGES, **options)
        except Exception as exc:
            refused = _is_refusal(exc)
            if self.first_open is None and await self.breaker_open():
                self.note_open()  # the cooldown began during this call (checked on failures)
            return Outcome(False, error=type(exc).__name__, refused=refused)
        hidden = getattr(response, "_hidden_params", {}) or {}
        model_id = str(hidden.get("model_id", ""))
        served = "fallback" if model_id in self._backup_ids else "primary"
        return Outcome(True, served_by=served)

    async def breaker_open(self) -> bool | None:
        ids = self._primary_ids
        active = await self.router.health().cooldowns.async_get_active_cooldowns(
            model_ids=list(ids), parent_otel_span=None
        )
        return any(entry[0] in ids for entry in active or [])

    async def aclose(self) -> None:
        from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

        await close_litellm_async_clients()  # type: ignore[no-untyped-call]


__all__ = ["LiteLLMRouter"]
