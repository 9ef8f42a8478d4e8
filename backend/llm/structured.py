"""Structured output: read a model's JSON answer into a pydantic model, and build the one
repair request the gateway makes when the answer does not fit."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from backend.llm.types import ChatMessage

ModelT = TypeVar("ModelT", bound=BaseModel)


class InvalidOutput(ValueError):
    """The model's answer is not valid JSON for the schema; ``detail`` says why, briefly."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _json_text(text: str) -> str:
    """The JSON inside an answer: without Markdown fences or chatter around the object."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0]
    start, end = stripped.find("{"), stripped.rfind("}")
    if start != -1 and end > start:
        return stripped[start : end + 1]
    return stripped


def parse_output(text: str, schema: type[ModelT]) -> ModelT:
    try:
        data: Any = json.loads(_json_text(text))
    except json.JSONDecodeError as exc:
        raise InvalidOutput(f"not valid JSON ({exc.msg} at position {exc.pos})") from None
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(root)'}: {error['msg']}"
            for error in exc.errors()[:5]
        )
        raise InvalidOutput(f"does not match the schema ({problems})") from None


def repair_messages(
    messages: Sequence[ChatMessage], answer: str, problem: InvalidOutput
) -> list[ChatMessage]:
    """The original conversation, the invalid answer, and a request to answer again."""
    return [
        *messages,
        ChatMessage("assistant", answer),
        ChatMessage(
            "user",
            f"Your answer {problem.detail}. Answer again with only a JSON object that matches "
            "the requested schema, and nothing else.",
        ),
    ]


__all__ = ["InvalidOutput", "parse_output", "repair_messages"]
