"""The usual hand-built wrapper: tenacity retries around the SDK (its own retries off), every
attempt through a pybreaker ``CircuitBreaker``, and a ``try/except`` that falls back to the
second target (with its own breaker) when the first one fails.

As such wrappers are usually written: transient SDK errors (connection, timeout, 429, 5xx) are
retried with ``wait_random_exponential`` (full jitter, 0.1 s doubling, 10 s cap) and do count
toward the breaker; other errors (401, 400, 404) neither retry nor count. The wait does not
read ``Retry-After`` (tenacity knows nothing of HTTP). A call budget is tenacity's
``stop_after_delay`` plus an ``asyncio.timeout`` around the whole call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pybreaker
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from bench.common import MESSAGES, MODEL
from bench.contenders.base import Contender, Outcome
from bench.contenders.raw_sdk import sdk_client

TRANSIENT: tuple[type[Exception], ...] = (
    openai.APIConnectionError,  # includes APITimeoutError
    openai.RateLimitError,
    openai.InternalServerError,
)


def _not_transient(exc: BaseException) -> bool:
    return not isinstance(exc, TRANSIENT)


class _OpenListener(pybreaker.CircuitBreakerListener):
    def __init__(self, contender: Contender) -> None:
        self.contender = contender

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        if new_state is not None and new_state.name == pybreaker.STATE_OPEN:
            self.contender.note_open()


class _Target:
    def __init__(self, client: Any, breaker: pybreaker.CircuitBreaker) -> None:
        self.client = client
        self.breaker = breaker


class TenacityPybreaker(Contender):
    name = "tenacity_pybreaker"
    label = "tenacity + pybreaker"
    has_breaker = True
    has_fallback = True
    notes = ("wait_random_exponential(0.1 s x 2, cap 10 s); Retry-After not read",)

    async def start(self) -> None:
        s = self.spec.settings
        self.targets: list[_Target] = []
        for url in (self.spec.primary_url, self.spec.fallback_url):
            if url is None:
                continue
            client = sdk_client(
                url,
                s.attempt_timeout,
                self.spec.max_connections,
                self.spec.transport,
                max_retries=0,
            )
            breaker = pybreaker.CircuitBreaker(
                fail_max=s.breaker_threshold,
                reset_timeout=s.open_seconds,
                exclude=[_not_transient],
                throw_new_error_on_trip=False,
                listeners=[_OpenListener(self)] if not self.targets else [],
            )
            self.targets.append(_Target(client, breaker))

    async def _attempt(self, target: _Target) -> Any:
        with target.breaker.calling():
            return await target.client.chat.completions.create(model=MODEL, messages=MESSAGES)

    async def _call_target(self, target: _Target, budget: float | None) -> Any:
        s = self.spec.settings
        stop: stop_base = stop_after_attempt(s.max_retries + 1)
        if budget is not None:
            stop = stop | stop_after_delay(budget)
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT),
            wait=wait_random_exponential(
                multiplier=s.initial_wait, exp_base=s.multiplier, max=s.max_wait
            ),
            stop=stop,
            reraise=True,
        )
        return await retrying(self._attempt, target)

    async def call(self, budget: float | None = None) -> Outcome:
        loop = asyncio.get_running_loop()
        ends = None if budget is None else loop.time() + budget
        refused = False
        error: str | None = None
        for index, target in enumerate(self.targets):
            left = None if ends is None else ends - loop.time()
            try:
                async with asyncio.timeout(left):
                    await self._call_target(target, left)
            except Exception as exc:
                error = type(exc).__name__
                if index == 0:
                    refused = isinstance(exc, pybreaker.CircuitBreakerError)
                continue
            return Outcome(True, served_by="primary" if index == 0 else "fallback")
        return Outcome(False, error=error, refused=refused)

    async def breaker_open(self) -> bool | None:
        return self.targets[0].breaker.current_state != pybreaker.STATE_CLOSED

    async def aclose(self) -> None:
        for target in self.targets:
            await target.client.close()


__all__ = ["TRANSIENT", "TenacityPybreaker"]
