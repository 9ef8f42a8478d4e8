"""What a contender is: something that makes one chat-completion call with the common
settings, against a primary OpenAI-compatible target and optionally a fallback one."""

from __future__ import annotations

import abc
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from bench.common import COMMON, Common


@dataclass(frozen=True)
class ContenderSpec:
    """Where the contender sends its calls and with which settings.

    ``primary_url`` / ``fallback_url`` are OpenAI base URLs (ending in ``/v1``); with no
    ``fallback_url`` the route has one target. ``database_url`` is Bulwark's (default: SQLite
    in ``workdir``). ``max_connections`` widens the HTTP connection pool where a contender
    allows it (None: the SDK's default pool, 1,000 connections); ``transport`` picks the SDK's
    HTTP client.
    """

    primary_url: str
    fallback_url: str | None = None
    settings: Common = COMMON
    workdir: str = "."
    database_url: str | None = None
    max_connections: int | None = None
    transport: str = "httpx"
    """``httpx``: the SDK's default HTTP client; ``aiohttp``: ``openai.DefaultAioHttpClient``
    (the SDK's option for many concurrent requests)."""
    options: dict[str, Any] = field(default_factory=dict)

    def with_settings(self, **changes: Any) -> ContenderSpec:
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, **changes))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["settings"] = self.settings.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContenderSpec:
        values = dict(data)
        values["settings"] = Common(**values.get("settings", {}))
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One call, as the caller saw it."""

    ok: bool
    served_by: str | None = None
    """``primary`` or ``fallback`` for a success."""
    error: str | None = None
    """The exception's class name for a failure."""
    refused: bool = False
    """Failed at once because the contender's breaker (or cooldown) refused the primary."""


class Contender(abc.ABC):
    """One way of calling an LLM. ``call`` never raises for a provider failure."""

    name: ClassVar[str]
    label: ClassVar[str]
    has_breaker: ClassVar[bool] = False
    has_fallback: ClassVar[bool] = False
    notes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: ContenderSpec) -> None:
        self.spec = spec
        self.first_open: float | None = None
        """Wall-clock time (``time.time()``) when the primary's breaker first opened."""

    def note_open(self) -> None:
        if self.first_open is None:
            self.first_open = time.time()

    @classmethod
    async def create(cls, spec: ContenderSpec) -> Self:
        contender = cls(spec)
        await contender.start()
        return contender

    async def start(self) -> None:  # noqa: B027  (optional hook)
        """Build clients, open databases."""

    @abc.abstractmethod
    async def call(self, budget: float | None = None) -> Outcome:
        """Make one call; ``budget`` (seconds) bounds the whole call, retries included."""

    async def breaker_open(self) -> bool | None:
        """Whether the primary target's breaker is open now (None: no breaker)."""
        return None

    async def recorded_attempts(self) -> int | None:
        """Attempts in the contender's durable history (None: it keeps none)."""
        return None

    async def aclose(self) -> None:  # noqa: B027  (optional hook)
        """Release clients and connections."""


__all__ = ["Contender", "ContenderSpec", "Outcome"]
