"""Streaming through the gateway. Retries and fallback happen only until the first chunk is
in hand; once a chunk has reached the caller, a failure ends the stream with a classified
error instead of starting over (which would send the caller duplicate text)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from backend.core.errors import (
    BulwarkError,
    ErrorCategory,
    PermanentError,
    ProviderError,
    TransientError,
    classify,
)
from backend.llm.history import CallLog
from backend.llm.routing import RouteWalk
from backend.llm.types import ProviderRequest, Target

if TYPE_CHECKING:
    from backend.llm.gateway import LLMGateway


async def _open(
    gateway: LLMGateway, target: Target, request: ProviderRequest
) -> tuple[AsyncIterator[str], str | None]:
    """Start a provider stream and wait for its first chunk (``None``: an empty answer)."""
    iterator = gateway.provider_for(target).stream(request).__aiter__()
    try:
        first = await iterator.__anext__()
    except StopAsyncIteration:
        return iterator, None
    except BaseException:
        await _close(iterator)
        raise
    return iterator, first


async def _close(iterator: AsyncIterator[str]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


async def stream_route(
    gateway: LLMGateway,
    log: CallLog,
    walk: RouteWalk,
    requests: Sequence[tuple[Target, ProviderRequest]],
    deadline: float | None,
) -> AsyncIterator[str]:
    last = requests[-1][0] if requests else None
    for target, request in requests:
        if deadline is not None and deadline - gateway.clock.monotonic() <= 0:
            walk.deadline_passed(target)
            break
        try:
            iterator, first = await gateway.send(
                log, target, functools.partial(_open, gateway, target, request), deadline
            )
        except BulwarkError as error:
            gateway.target_failed(log, walk, target, error, last=target is last)
            continue
        finished = False
        try:
            if first is not None:
                yield first
            async for chunk in iterator:
                yield chunk
            finished = True
        except ProviderError as failure:
            raise _mid_stream_failure(gateway, log, target, failure) from failure
        finally:
            await _close(iterator)
            if finished:
                log.finish(gateway.history, outcome="success", target=str(target))
            elif not log.finished:
                log.amend_last(
                    outcome="failure",
                    category=ErrorCategory.CANCELLED.value,
                    decision="give_up",
                    error="the caller stopped reading",
                )
                log.finish(
                    gateway.history,
                    outcome="failure",
                    target=str(target),
                    category=ErrorCategory.CANCELLED.value,
                )
        return
    exhausted = walk.exhausted(len(log.attempts))
    log.finish(
        gateway.history,
        outcome="failure",
        category=exhausted.category.value,
        error=exhausted.message,
    )
    raise exhausted


def _mid_stream_failure(
    gateway: LLMGateway, log: CallLog, target: Target, failure: ProviderError
) -> BulwarkError:
    classification = classify(failure)
    message = (
        f"{log.context}: the stream from {target} failed after text had been sent "
        f"({classification.category.value}: {classification.message or 'no detail'}). It was "
        "not retried, so the caller never receives duplicate text; call again to start over."
    )
    log.amend_last(
        outcome="failure",
        category=classification.category.value,
        decision="give_up",
        error=classification.message or None,
    )
    log.finish(
        gateway.history,
        outcome="failure",
        target=str(target),
        category=classification.category.value,
        error=message,
    )
    kind = TransientError if classification.transient else PermanentError
    return kind(
        message, category=classification.category, attempts=len(log.attempts), cause=failure
    )


__all__ = ["stream_route"]
