"""Helpers shared by the SDK adapters: message shapes, timeouts, and the failures an adapter
raises itself (a completed HTTP exchange whose answer the provider's policy refused)."""

from __future__ import annotations

from collections.abc import Sequence

from backend.core.errors import Classification, ErrorCategory, ProviderError
from backend.llm.types import ChatMessage, ProviderRequest


def timeout_of(request: ProviderRequest, default: float) -> float:
    """The HTTP timeout for ``request``. Always a number: the SDKs read ``None`` as "no
    timeout", and the Anthropic SDK derives its own when none is given."""
    return request.timeout if request.timeout is not None else default


def role_content(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """``[{"role", "content"}, ...]`` in the order given."""
    return [{"role": m.role, "content": m.content} for m in messages]


def split_system(messages: Sequence[ChatMessage]) -> tuple[str | None, list[dict[str, str]]]:
    """The system prompt (every system message, joined by a blank line; ``None`` if there is
    none) and the remaining messages, for APIs that take the system prompt apart."""
    system = [m.content for m in messages if m.role == "system"]
    rest = role_content([m for m in messages if m.role != "system"])
    return ("\n\n".join(system) if system else None), rest


def content_filtered(provider: str, reason: str, request_id: str | None) -> ProviderError:
    """The answer came back, but the provider's content policy stopped it."""
    return ProviderError(
        Classification(
            ErrorCategory.CONTENT_FILTER,
            transient=False,
            request_id=request_id,
            message=f"{provider} stopped the answer under its content policy ({reason})",
        )
    )


__all__ = ["content_filtered", "role_content", "split_system", "timeout_of"]
