"""The baseline: ``openai.AsyncOpenAI`` as most code uses it, with the SDK's default retries
(2 retries, 0.5 s doubling backoff with jitter, ``Retry-After`` honoured) and the common 30 s
timeout. No breaker, no fallback; a call budget is an ``asyncio.timeout`` around the call."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import openai

from bench.common import API_KEY, MESSAGES, MODEL
from bench.contenders.base import Contender, Outcome


def http_client(max_connections: int | None, timeout: float, transport: str = "httpx") -> Any:
    """The SDK's HTTP client with a wider pool and/or on aiohttp, or None for its default."""
    if max_connections is None and transport == "httpx":
        return None
    limits = httpx2.Limits(max_connections=max_connections or 1000, max_keepalive_connections=1000)
    if transport == "aiohttp":
        return openai.DefaultAioHttpClient(limits=limits, timeout=timeout)
    return openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout)


def sdk_client(
    base_url: str,
    timeout: float,
    max_connections: int | None,
    transport: str = "httpx",
    **kw: Any,
) -> Any:
    client = http_client(max_connections, timeout, transport)
    extra: dict[str, Any] = {} if client is None else {"http_client": client}
    return openai.AsyncOpenAI(api_key=API_KEY, base_url=base_url, timeout=timeout, **extra, **kw)


class RawSdk(Contender):
    name = "raw_sdk"
    label = "raw openai SDK"
    notes = ("SDK defaults: max_retries=2, 0.5 s doubling backoff, Retry-After honoured",)

    async def start(self) -> None:
        spec = self.spec
        self.client = sdk_client(
            spec.primary_url, spec.settings.attempt_timeout, spec.max_connections, spec.transport
        )

    async def call(self, budget: float | None = None) -> Outcome:
        try:
            async with asyncio.timeout(budget):
                await self.client.chat.completions.create(model=MODEL, messages=MESSAGES)
        except Exception as exc:
            return Outcome(False, error=type(exc).__name__)
        return Outcome(True, served_by="primary")

    async def aclose(self) -> None:
        await self.client.close()


__all__ = ["RawSdk", "http_client", "sdk_client"]
