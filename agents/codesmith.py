"""Codesmith: writes code for instructions, checks it without running it, has ReviewerGPT
review it, and revises it while the checks or the review find serious problems.

The loop, for ``max_review_rounds = N``::

    write ─> check ─> review (round 1) ─┬─ clean, degraded, or round N reached ─> done
                 ^                      └─ syntax error or major/critical finding
                 └──────── revise <───────┘

Every version that is returned has been checked, and (when ``N > 0``) reviewed: the attached
``review`` is always the review of the returned ``code``. ``N = 0`` skips the review. A
degraded review (no model reachable for ReviewerGPT) ends the loop. If asking for a revision
fails (provider outage, deadline), the last reviewed version is returned and
``checks["revision"]`` says why. The generated code is never executed.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from langchain_core.prompts import ChatPromptTemplate
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.base import BaseAgent
from agents.code_checks import check_code, syntax_failed
from agents.context import AgentCancelledError, AgentContext
from agents.languages import UNKNOWN, normalize_language
from agents.results import CodeResult, Finding, Review
from backend.core.errors import BulwarkError

#: Review findings at these severities force a revision.
BLOCKING_SEVERITIES = frozenset({"major", "critical"})

_FENCED = re.compile(r"^\s*```[^\n]*\n(.*?)\n?```\s*$", re.DOTALL)

_SYSTEM = (
    "You are Codesmith, a careful senior {language} engineer. Write complete, idiomatic, "
    "documented code that does exactly what is asked. Answer with a JSON object with the "
    "fields language, code (the source only, no Markdown fences) and explanation (a few "
    "sentences on the approach)."
)
WRITE_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", _SYSTEM),
        ("human", "{instructions}\n\nLanguage: {language}\n{context}"),
    ]
)
REVISE_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", _SYSTEM),
        (
            "human",
            "{instructions}\n\nLanguage: {language}\n{context}\n"
            "Your previous version:\n```{language}\n{code}\n```\n\n"
            "Static checks (the code was not run):\n{checks}\n\n"
            "Review findings:\n{findings}\n\n"
            "Write a corrected version that fixes every problem above and still does what "
            "was asked.",
        ),
    ]
)


class CodeInput(BaseModel):
    """What a client asks Codesmith for."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "instructions": "Write a function slugify(title) that turns a title "
                    "into a URL slug.",
                    "language": "python",
                    "context": None,
                    "max_review_rounds": 1,
                }
            ]
        }
    )

    instructions: str = Field(
        min_length=1, description="What the code must do, in plain words.", max_length=20_000
    )
    language: str = Field(
        default="python",
        min_length=1,
        description="Programming language of the code. Python code is syntax-checked and "
        "linted (never run); other languages are reviewed only.",
    )
    context: str | None = Field(
        default=None, description="Existing code to extend or modify, if any."
    )
    max_review_rounds: int = Field(
        default=1,
        ge=0,
        le=5,
        description="How many times ReviewerGPT reviews the code (0: no review). After each "
        "review but the last, a syntax error or a major/critical finding triggers a revision.",
    )

    @field_validator("instructions")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("instructions must not be blank")
        return value


class CodeDraft(BaseModel):
    """The structured answer asked of the model."""

    language: str = Field(description="Programming language of the code.")
    code: str = Field(description="The complete source code, without Markdown fences.")
    explanation: str = Field(description="A few sentences on what the code does and how.")

    @field_validator("code")
    @classmethod
    def _has_code(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the code is empty")
        return value


class Codesmith(BaseAgent[CodeInput, CodeResult]):
    """Writes code, checks it statically, has it reviewed, and revises it; the result
    carries the final code's checks and review and the model that wrote it."""

    name: ClassVar[str] = "codesmith"
    task_type: ClassVar[str] = "code"
    Input: ClassVar[type[BaseModel]] = CodeInput
    Output: ClassVar[type[BaseModel]] = CodeResult
    route: ClassVar[str] = "code"
    description: ClassVar[str] = (
        "Writes code for instructions, checks it without running it, and revises it after "
        "ReviewerGPT's review."
    )

    async def run(self, input: CodeInput, ctx: AgentContext) -> CodeResult:
        language = normalize_language(input.language)
        variables = {
            "instructions": input.instructions,
            "language": language,
            "context": _context_block(input.context),
        }
        result = await self._write(WRITE_PROMPT, variables, language)
        result.checks = await check_code(result.code, result.language)
        for round_number in range(1, input.max_review_rounds + 1):
            result.review = await self._review(result, input.instructions, ctx)
            if not needs_revision(result.checks, result.review):
                break
            if round_number == input.max_review_rounds:
                ctx.logger.info("codesmith: review rounds exhausted with problems left")
                break
            ctx.logger.info("codesmith: revising after review round %d", round_number)
            revise = {
                **variables,
                "code": result.code,
                "checks": json.dumps(result.checks, indent=2),
                "findings": _findings_text(result.review.findings),
            }
            try:
                revised = await self._write(REVISE_PROMPT, revise, language)
            except AgentCancelledError:
                raise
            except BulwarkError as error:
                ctx.logger.warning("codesmith: revision failed (%s): %s", error.category, error)
                result.checks["revision"] = (
                    f"failed ({error.category.value}): returned the last reviewed version"
                )
                break
            revised.checks = await check_code(revised.code, revised.language)
            result = revised
        return result

    async def _write(
        self, prompt: ChatPromptTemplate, variables: dict[str, str], language: str
    ) -> CodeResult:
        """One code request; the draft as a result without checks or review yet."""
        answer = await self.ask_structured(prompt.format_messages(**variables), schema=CodeDraft)
        draft: CodeDraft = answer.parsed
        draft_language = normalize_language(draft.language)
        return CodeResult(
            language=language if draft_language == UNKNOWN else draft_language,
            code=strip_fences(draft.code),
            explanation=draft.explanation,
            model=answer.target,
        )

    async def _review(self, result: CodeResult, instructions: str, ctx: AgentContext) -> Review:
        review = await ctx.call_agent(
            "review",
            {
                "code": result.code,
                "language": result.language,
                "instructions": _review_instructions(instructions),
            },
        )
        if not isinstance(review, Review):
            raise TypeError(f"the 'review' agent returned {type(review).__name__}, not Review")
        return review


def needs_revision(checks: dict[str, Any], review: Review) -> bool:
    """Whether a version must be revised: it does not parse, or a (non-degraded) review
    found a major or critical problem. A degraded review never asks for one."""
    if review.degraded:
        return False
    return syntax_failed(checks) or any(f.severity in BLOCKING_SEVERITIES for f in review.findings)


def strip_fences(code: str) -> str:
    """The code inside a Markdown fence, if the model wrapped it in one anyway."""
    match = _FENCED.match(code)
    return match.group(1) if match else code


def _review_instructions(instructions: str) -> str:
    """What ReviewerGPT is asked to focus on (its limit is 4000 characters)."""
    asked = instructions if len(instructions) <= 3000 else instructions[:2997] + "..."
    return f"Check that the code is correct, safe and does what was asked: {asked}"


def _context_block(context: str | None) -> str:
    if not context:
        return ""
    return f"\nExisting code to extend or modify:\n```\n{context}\n```\n"


def _findings_text(findings: list[Finding]) -> str:
    if not findings:
        return "(none)"
    lines = []
    for f in findings:
        where = f"line {f.line}" if f.line is not None else "whole file"
        fix = f" Suggestion: {f.suggestion}" if f.suggestion else ""
        lines.append(f"- [{f.severity}] {where} ({f.category}): {f.message}{fix}")
    return "\n".join(lines)


__all__ = ["BLOCKING_SEVERITIES", "CodeDraft", "CodeInput", "Codesmith", "needs_revision"]
