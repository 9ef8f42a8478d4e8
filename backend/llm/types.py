"""The gateway's vocabulary: targets, messages, provider requests and responses, results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Target:
    """One provider and model, written ``provider:model`` (the model part may contain ``:``
    and ``/``). Each target has its own circuit breaker, keyed by :attr:`key`."""

    provider: str
    model: str

    @classmethod
    def parse(cls, text: str) -> Target:
        provider, sep, model = text.partition(":")
        if not sep or not provider or not model:
            raise ValueError(f"target {text!r} is not of the form provider:model")
        return cls(provider, model)

    @property
    def key(self) -> str:
        return f"{self.provider}:{self.model}"

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class OutputSchema:
    """A structured-output request: the JSON schema of a pydantic model, and its name."""

    name: str
    json_schema: Mapping[str, Any]

    @classmethod
    def of(cls, model: type[BaseModel]) -> OutputSchema:
        return cls(name=model.__name__, json_schema=model.model_json_schema())


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """What an adapter sends: one model, the messages, and the generation knobs."""

    model: str
    messages: Sequence[ChatMessage]
    max_tokens: int | None = None
    temperature: float | None = None
    schema: OutputSchema | None = None
    timeout: float | None = None
    """Seconds the adapter's HTTP request may take (the manager also enforces it)."""


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ProviderResponse:
    """What an adapter returns: the text (for a schema request, the JSON text)."""

    text: str
    usage: Usage = field(default_factory=Usage)
    request_id: str | None = None
    finish_reason: str | None = None
    simulated: bool = False


__all__ = [
    "ChatMessage",
    "OutputSchema",
    "ProviderRequest",
    "ProviderResponse",
    "Role",
    "Target",
    "Usage",
]
