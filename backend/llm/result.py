"""What a gateway call returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.llm.types import Usage


@dataclass(frozen=True, slots=True)
class LLMResult:
    """The answer of one gateway call.

    ``target`` is the ``provider:model`` that answered (after any fallback); ``parsed`` is
    the validated pydantic object when a schema was asked for; ``attempts`` counts every
    request sent and every breaker refusal, across targets; ``call_id`` finds the call in
    the history (``llm_calls``)."""

    text: str
    target: str
    call_id: str
    attempts: int
    usage: Usage
    parsed: Any = None
    simulated: bool = False
    replayed: bool = False


__all__ = ["LLMResult"]
