"""The result shapes clients rely on (design.md, "Review and code results")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Severity = Literal["info", "minor", "major", "critical"]


class Finding(BaseModel):
    """One problem found in the code. ``line`` is 1-based in the submitted code (or the new
    side of a diff); ``None`` when the finding is about the whole file."""

    severity: Severity
    line: int | None = Field(default=None, ge=1)
    category: str = Field(description="e.g. bug, security, style, performance, maintainability")
    message: str
    suggestion: str | None = None


class Review(BaseModel):
    """ReviewerGPT's answer. ``degraded`` is true when no model could be reached and the
    findings come from static analysis alone; ``model`` is the ``provider:model`` that wrote
    it (``static-analysis`` when degraded)."""

    summary: str
    score: int = Field(ge=0, le=100)
    findings: list[Finding] = Field(default_factory=list)
    degraded: bool = False
    model: str


class CodeResult(BaseModel):
    """Codesmith's answer: the code, how it was checked (without running it), and the final
    review by ReviewerGPT."""

    language: str
    code: str
    explanation: str
    checks: dict[str, Any] = Field(default_factory=dict)
    review: Review | None = None
    model: str


__all__ = ["CodeResult", "Finding", "Review", "Severity"]
