"""The LLM gateway: every LLM call in Bulwark goes through here.

A call names a route; the gateway walks the route's targets in order. Each target is tried
through the :class:`ErrorRecoveryManager` (retries, per-attempt timeout, the target's circuit
breaker); a target that fails for a reason another target may not share (see
:mod:`backend.llm.routing`) hands over to the next one. Every attempt, across targets, is
recorded in one :class:`CallLog` and handed to the history sink when the call ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from backend.core.breaker_registry import BreakerRegistry
from backend.core.clock import SYSTEM_CLOCK, Clock
from backend.core.error_recovery import ErrorRecoveryManager
from backend.core.errors import BulwarkError, ErrorCategory, PermanentError
from backend.llm.history import CallLog, HistorySink
from backend.llm.messages import MessageLike, normalize_messages
from backend.llm.providers.base import Provider
from backend.llm.replay import ReplayBook, ReplayEntry, request_fingerprint
from backend.llm.result import LLMResult
from backend.llm.routing import RouteTable, RouteWalk
from backend.llm.streaming import stream_route
from backend.llm.structured import InvalidOutput, parse_output, repair_messages
from backend.llm.types import (
    ChatMessage,
    OutputSchema,
    ProviderRequest,
    ProviderResponse,
    Target,
    Usage,
)
from backend.logging_setup import bind_log_context

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _CallRequest:
    """What one ``complete`` call asks, whichever target answers it."""

    messages: list[ChatMessage]
    schema: type[BaseModel] | None
    max_tokens: int | None
    temperature: float | None
    deadline: float | None
    fingerprint: str | None


class LLMGateway:
    """Routes, retries, breakers and history around a set of providers.

    Build one per process with :meth:`create` (from ``Settings``) or directly with the parts,
    share it, and close it with :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        routes: RouteTable,
        providers: Iterable[Provider],
        manager: ErrorRecoveryManager,
        breakers: BreakerRegistry,
        history: HistorySink | None = None,
        clock: Clock = SYSTEM_CLOCK,
        on_close: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.routes = routes
        self.providers: dict[str, Provider] = {p.name: p for p in providers}
        self.manager = manager
        self.breakers = breakers
        self.history = history
        self.clock = clock
        self._on_close = list(on_close)

    @classmethod
    async def create(cls, settings: Any, **options: Any) -> LLMGateway:
        """A gateway wired from ``Settings``: see :func:`backend.llm.factory.create_gateway`."""
        from backend.llm.factory import create_gateway

        return await create_gateway(settings, **options)

    def register_provider(self, provider: Provider) -> None:
        """Make ``provider`` answer for targets ``<provider.name>:<model>``."""
        self.providers[provider.name] = provider

    async def flush_history(self) -> None:
        """Write the queued call history now (it is otherwise written in the background)."""
        if self.history is not None:
            await self.history.flush()

    async def aclose(self) -> None:
        for close in reversed(self._on_close):
            await close()
        for provider in self.providers.values():
            await provider.aclose()

    def _request(
        self,
        target: Target,
        messages: list[ChatMessage],
        schema: type[BaseModel] | None,
        max_tokens: int | None,
        temperature: float | None,
    ) -> ProviderRequest:
        return ProviderRequest(
            model=target.model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            schema=OutputSchema.of(schema) if schema is not None else None,
            timeout=self.manager.config.attempt_timeout,
        )

    def provider_for(self, target: Target) -> Provider:
        provider = self.providers.get(target.provider)
        if provider is None:
            raise PermanentError(
                f"No provider named {target.provider!r} is configured for target {target}; "
                f"configured providers: {', '.join(sorted(self.providers)) or 'none'}.",
                category=ErrorCategory.INVALID_REQUEST,
            )
        return provider

    async def send(
        self,
        log: CallLog,
        target: Target,
        fn: Callable[[], Awaitable[T]],
        deadline: float | None,
    ) -> T:
        """Run ``fn`` against ``target`` with retries, its breaker, and the call's log."""
        return await self.manager.execute_with_retry(
            fn,
            context=log.context,
            breaker=self.breakers.get(target.key),
            deadline=deadline,
            listeners=[log.listener(target.key)],
        )

    async def _send(
        self, log: CallLog, target: Target, request: ProviderRequest, deadline: float | None
    ) -> ProviderResponse:
        provider = self.provider_for(target)
        return await self.send(log, target, lambda: provider.complete(request), deadline)

    async def _structured(
        self,
        log: CallLog,
        target: Target,
        request: ProviderRequest,
        response: ProviderResponse,
        schema: type[BaseModel],
        deadline: float | None,
    ) -> tuple[ProviderResponse, BaseModel]:
        try:
            return response, parse_output(response.text, schema)
        except InvalidOutput as problem:
            log.amend_last(
                outcome="failure",
                category=ErrorCategory.INVALID_OUTPUT.value,
                decision="retry",
                error=f"answer {problem.detail}",
            )
            repair = ProviderRequest(
                model=request.model,
                messages=repair_messages(request.messages, response.text, problem),
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                schema=request.schema,
                timeout=request.timeout,
            )
        response = await self._send(log, target, repair, deadline)
        try:
            return response, parse_output(response.text, schema)
        except InvalidOutput as problem:
            log.amend_last(
                outcome="failure",
                category=ErrorCategory.INVALID_OUTPUT.value,
                decision="give_up",
                error=f"answer {problem.detail}",
            )
            raise PermanentError(
                f"{log.context}: {target} answered twice, and neither answer was valid JSON "
                f"for {schema.__name__}: the repaired answer {problem.detail}.",
                category=ErrorCategory.INVALID_OUTPUT,
                attempts=2,
            ) from None

    async def complete(
        self,
        messages: Iterable[MessageLike],
        *,
        route: str,
        agent: str | None = None,
        task_id: str | None = None,
        schema: type[BaseModel] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        deadline: float | None = None,
        replay: ReplayBook | None = None,
    ) -> LLMResult:
        """Answer ``messages`` with the first target of ``route`` that can.

        ``deadline`` is an absolute time on the clock's ``monotonic()`` scale
        (``time.monotonic()`` by default) bounding every retry and fallback. For a call made
        for a task (``task_id``), the answer is kept with the task's history, and ``replay``
        (the answers of the task's earlier run) answers the same request without a provider.
        """
        chat = normalize_messages(messages)
        targets = self.routes.targets(route)
        log = self.new_log(route, agent, task_id)
        with bind_log_context(call_id=log.id, agent=agent, task_id=task_id):
            fingerprint = None
            if task_id is not None:
                fingerprint = request_fingerprint(
                    route, agent, chat, schema, max_tokens, temperature
                )
                entry = replay.take(fingerprint) if replay is not None else None
                if entry is not None:
                    return self._replayed(log, entry, schema)
            request = _CallRequest(chat, schema, max_tokens, temperature, deadline, fingerprint)
            try:
                return await self._walk(log, route, targets, request)
            except asyncio.CancelledError:
                log.finish(
                    self.history,
                    outcome="failure",
                    category=ErrorCategory.CANCELLED.value,
                    error="cancelled by the caller",
                )
                raise

    async def _walk(
        self, log: CallLog, route: str, targets: list[Target], call: _CallRequest
    ) -> LLMResult:
        """Try the route's targets in order until one answers."""
        chat, schema, max_tokens, temperature = (
            call.messages,
            call.schema,
            call.max_tokens,
            call.temperature,
        )
        deadline, fingerprint = call.deadline, call.fingerprint
        walk = RouteWalk(route)
        last = targets[-1]
        for target in targets:
            if deadline is not None and deadline - self.clock.monotonic() <= 0:
                walk.deadline_passed(target)
                break
            request = self._request(target, chat, schema, max_tokens, temperature)
            try:
                response = await self._send(log, target, request, deadline)
                parsed = None
                if schema is not None:
                    response, parsed = await self._structured(
                        log, target, request, response, schema, deadline
                    )
            except BulwarkError as error:
                self.target_failed(log, walk, target, error, last=target is last)
                continue
            log.finish(
                self.history,
                outcome="success",
                target=str(target),
                input_tokens=response.usage.input_tokens,
                output_tokens=response.usage.output_tokens,
                request_hash=fingerprint,
                response_text=response.text if fingerprint is not None else None,
            )
            return LLMResult(
                text=response.text,
                target=str(target),
                call_id=log.id,
                attempts=len(log.attempts),
                usage=response.usage,
                parsed=parsed,
                simulated=response.simulated,
            )
        exhausted = walk.exhausted(len(log.attempts))
        log.finish(
            self.history,
            outcome="failure",
            category=exhausted.category.value,
            error=exhausted.message,
        )
        raise exhausted

    def target_failed(
        self, log: CallLog, walk: RouteWalk, target: Target, error: BulwarkError, *, last: bool
    ) -> None:
        """Note a target's failure: move on to the next target (returns), or end the call
        (records it and re-raises ``error``)."""
        if not walk.failed(target, error):
            log.finish(
                self.history,
                outcome="failure",
                target=str(target),
                category=error.category.value,
                error=error.message,
            )
            raise error
        if not last:
            log.mark_fallback()

    def _replayed(
        self, log: CallLog, entry: ReplayEntry, schema: type[BaseModel] | None
    ) -> LLMResult:
        """An answer from the task's earlier run: no request, recorded as replayed."""
        usage = Usage(entry.input_tokens or 0, entry.output_tokens or 0)
        log.finish(
            self.history,
            outcome="success",
            target=entry.target,
            replayed=True,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
        )
        parsed = parse_output(entry.text, schema) if schema is not None else None
        return LLMResult(
            text=entry.text,
            target=entry.target,
            call_id=log.id,
            attempts=0,
            usage=usage,
            parsed=parsed,
            replayed=True,
        )

    def new_log(self, route: str, agent: str | None, task_id: str | None) -> CallLog:
        return CallLog(
            context=f"{agent or 'gateway'}/{route}",
            clock=self.clock,
            agent=agent,
            task_id=task_id,
            route=route,
        )

    def stream(
        self,
        messages: Iterable[MessageLike],
        *,
        route: str,
        agent: str | None = None,
        task_id: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        deadline: float | None = None,
    ) -> AsyncIterator[str]:
        """Text chunks of the answer. Retries and fallback happen only before the first chunk
        reaches the caller; a failure after it ends the stream with a classified error."""
        chat = normalize_messages(messages)
        targets = self.routes.targets(route)
        log = self.new_log(route, agent, task_id)
        requests = [(t, self._request(t, chat, None, max_tokens, temperature)) for t in targets]
        return stream_route(self, log, RouteWalk(route), requests, deadline)


__all__ = ["LLMGateway"]
