"""The provider adapter protocol. An adapter is the only place that touches an SDK: it turns
a :class:`ProviderRequest` into the SDK's call and every SDK exception into a
:class:`backend.core.errors.ProviderError` (``raise ProviderError.wrap(exc) from exc``), so
nothing past it sees an SDK type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from backend.llm.types import ProviderRequest, ProviderResponse


class Provider(Protocol):
    """A source of completions, registered under a name (the ``provider`` part of a target)."""

    name: str

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        """One request, one response. Raises ``ProviderError`` on any failure."""
        ...

    def stream(self, request: ProviderRequest) -> AsyncIterator[str]:
        """Text chunks as they arrive. Raises ``ProviderError`` before or during iteration."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


__all__ = ["Provider"]
