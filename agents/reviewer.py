"""ReviewerGPT: reviews code (a whole file or a unified diff) and answers with a ``Review``.

Rules:

* The model sees the code as numbered lines (:mod:`agents.prompts.review`); a file larger than
  ``chunk_tokens`` is reviewed in chunks (:mod:`agents.chunking`), each with the file's own line
  numbers, and the answers are merged: findings pooled, score averaged weighted by lines,
  summaries joined.
* A finding is kept only if its line lies in the span its chunk showed, and for a diff within
  ``diff_radius`` lines of a change; same line, same category and a similar message make one
  finding, at the highest severity. Findings are sorted by line (whole-file findings first),
  then from the most severe. Scores are clamped to 0..100.
* When no model can be reached (every target unavailable or failed, breakers open, answers
  unusable), the review does not fail: it is made of static checks alone
  (:mod:`agents.static_analysis`), ``degraded=True``, ``model="static-analysis"``. A cancelled
  task, a passed deadline and request bugs still fail the review.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agents import chunking
from agents.base import BaseAgent
from agents.chunking import Chunk, FileDiff
from agents.context import AgentContext
from agents.languages import detect_language
from agents.prompts.review import ReviewDraft, review_messages
from agents.results import Finding, Review
from agents.static_analysis import COVERAGE, StaticAnalyzer, StaticReport
from agents.static_analysis import score as static_score
from backend.core import errors
from backend.core.errors import BulwarkError, ErrorCategory

STATIC_MODEL = "static-analysis"
SIMULATED = "[simulated]"
MAX_CODE_CHARS = 1_000_000
SEVERITY_RANK = {"info": 0, "minor": 1, "major": 2, "critical": 3}
#: Failures that mean no model could be reached for the review.
OUTAGES = (errors.TransientError, errors.AllTargetsFailedError, errors.CircuitOpenError)
#: Permanent failures that still leave the review to static checks (the model answered, but
#: its answers were unusable or refused).
DEGRADING_CATEGORIES = frozenset({ErrorCategory.INVALID_OUTPUT, ErrorCategory.CONTENT_FILTER})


class ReviewInput(BaseModel):
    """What to review: the code, optionally a diff of it, and hints."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "import os\n\ndef read(path):\n    return open(path).read()\n",
                    "language": "python",
                    "filename": "util.py",
                    "instructions": "Focus on resource handling.",
                }
            ]
        }
    )

    code: str = Field(
        min_length=1,
        max_length=MAX_CODE_CHARS,
        description="The code to review. With `diff`, the whole new file (used to check the "
        "line numbers of findings and for static checks when no model is reachable).",
    )
    language: str | None = Field(
        default=None,
        max_length=40,
        description="Programming language; detected from the file name, shebang or content "
        "when omitted.",
    )
    filename: str | None = Field(default=None, max_length=400, description="The file's path.")
    diff: str | None = Field(
        default=None,
        max_length=MAX_CODE_CHARS,
        description="A unified diff of one file: only the changed lines and their context are "
        "reviewed; finding lines then refer to the new file.",
    )
    instructions: str | None = Field(
        default=None, max_length=4000, description="What the reviewer should focus on."
    )

    @field_validator("code")
    @classmethod
    def _not_blank(cls, code: str) -> str:
        if not code.strip():
            raise ValueError("the code is blank: send the code to review")
        return code

    @model_validator(mode="after")
    def _diff_is_usable(self) -> ReviewInput:
        self.diff_file()
        return self

    def diff_file(self) -> FileDiff | None:
        """The file of ``diff`` to review (``filename`` picks one when it changes several)."""
        if self.diff is None or not self.diff.strip():
            return None
        files = chunking.parse_unified_diff(self.diff)
        name = (self.filename or "").replace("\\", "/")
        if len(files) > 1 and name:
            files = [f for f in files if f.path and (f.path == name or _same_file(f.path, name))]
        if len(files) != 1:
            paths = ", ".join(f.path or "?" for f in chunking.parse_unified_diff(self.diff))
            raise ValueError(
                f"the diff changes several files ({paths}): review one per task, "
                "or name it in `filename`"
            )
        if not files[0].lines or not files[0].changed:
            raise ValueError("the diff leaves nothing to review (no new or changed lines)")
        return files[0]


def _same_file(a: str, b: str) -> bool:
    return a.endswith("/" + b) or b.endswith("/" + a)


@dataclass(frozen=True)
class _Plan:
    """How one input is reviewed: its chunks, and which lines findings may cite."""

    language: str
    filename: str | None
    chunks: list[Chunk]
    allowed: frozenset[int] | None  # None: any line a chunk showed
    whole_file: str | None  # the (new) file, for static checks
    diff: bool

    def keeps(self, line: int | None, chunk: Chunk | None = None) -> bool:
        if line is None:
            return True
        shown = chunk.shows(line) if chunk else any(c.shows(line) for c in self.chunks)
        return shown and (self.allowed is None or line in self.allowed)


@dataclass(frozen=True)
class _Part:
    chunk: Chunk
    summary: str
    score: int
    findings: list[Finding]
    target: str
    simulated: bool


class ReviewerGPT(BaseAgent[ReviewInput, Review]):
    """Reviews code with a model, in chunks when it is large, and falls back to static checks
    when no model can be reached (see the module rules)."""

    name = "reviewer"
    task_type = "review"
    Input = ReviewInput
    Output = Review
    route = "review"
    description = "Reviews code or a diff: findings with severity and line, and a score."

    chunk_tokens: ClassVar[int] = 6000
    """Approximate tokens of code per request (characters / 4)."""
    chunk_concurrency: ClassVar[int] = 4
    diff_context: ClassVar[int] = 6
    """Lines shown around each change when the whole new file is given."""
    diff_radius: ClassVar[int] = 3
    """How far from a change a finding may be and still be kept."""
    static_analyzer: ClassVar[StaticAnalyzer | None] = None
    """The degraded mode's checks (``None``: :meth:`StaticAnalyzer.default`)."""

    async def run(self, input: ReviewInput, ctx: AgentContext) -> Review:
        plan = self._plan(input)
        try:
            parts = await self._review(plan, input.instructions)
        except BulwarkError as error:
            if not self._degrades(error, ctx):
                raise
            ctx.logger.warning("reviewer: no model reachable (%s): static checks only", error)
            return await self._degraded(plan, error)
        return _merge(parts)

    def _plan(self, input: ReviewInput) -> _Plan:
        file_diff = input.diff_file()
        filename = input.filename or (file_diff.path if file_diff else None)
        language = detect_language(input.code, filename, input.language)
        if file_diff is None:
            chunks = chunking.split_code(input.code, self.chunk_tokens, language=language)
            return _Plan(language, filename, chunks, None, input.code, diff=False)
        lines = chunking.numbered(input.code)
        whole = file_diff.matches(lines)
        chunks = chunking.split_diff(
            file_diff,
            self.chunk_tokens,
            new_file=lines if whole else None,
            context=self.diff_context,
        )
        known = {n for n, _ in lines} if whole else set(file_diff.lines)
        allowed = frozenset(chunking.near(file_diff.changed, self.diff_radius) & known)
        return _Plan(language, filename, chunks, allowed, input.code if whole else None, True)

    async def _review(self, plan: _Plan, instructions: str | None) -> list[_Part]:
        total = len(plan.chunks)
        limit = asyncio.Semaphore(max(1, self.chunk_concurrency))

        async def one(index: int, chunk: Chunk) -> _Part:
            async with limit:
                return await self._review_part(plan, chunk, instructions, (index, total))

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(i, c)) for i, c in enumerate(plan.chunks, 1)]
        except BaseExceptionGroup as failed:
            # A cancellation or a bug outranks an outage, so neither passes for one.
            raise min(failed.exceptions, key=lambda e: isinstance(e, OUTAGES)) from None
        return [task.result() for task in tasks]

    async def _review_part(
        self, plan: _Plan, chunk: Chunk, instructions: str | None, part: tuple[int, int]
    ) -> _Part:
        messages = review_messages(
            chunk,
            language=plan.language,
            filename=plan.filename,
            instructions=instructions,
            diff=plan.diff,
            part=part,
        )
        result = await self.ask_structured(messages, schema=ReviewDraft)
        draft = ReviewDraft.model_validate(result.parsed)
        findings = [Finding(**f.model_dump()) for f in draft.findings if plan.keeps(f.line, chunk)]
        if dropped := len(draft.findings) - len(findings):
            self.ctx.logger.info("reviewer: dropped %d finding(s) citing lines not shown", dropped)
        score = min(100, max(0, draft.score))
        return _Part(chunk, draft.summary.strip(), score, findings, result.target, result.simulated)

    def _degrades(self, error: BulwarkError, ctx: AgentContext) -> bool:
        """Whether ``error`` leaves the review to static checks: not when the task itself was
        cancelled or ran out of time, nor for a request the providers cannot accept."""
        remaining = ctx.remaining()
        if ctx.cancelled.is_set() or (remaining is not None and remaining <= 0):
            return False
        return isinstance(error, OUTAGES) or error.category in DEGRADING_CATEGORIES

    async def _degraded(self, plan: _Plan, error: BulwarkError) -> Review:
        if plan.whole_file is None:
            note = "Static checks need the whole new file in `code`; only a diff was given."
            report = StaticReport([Finding(severity="info", category=COVERAGE, message=note)])
        else:
            analyzer = self.static_analyzer or StaticAnalyzer.default()
            remaining = self.ctx.remaining()  # the checks must not outlast the task
            if remaining is not None and remaining < analyzer.timeout:
                analyzer = dataclasses.replace(analyzer, timeout=max(0.1, remaining))
            report = await analyzer.analyze(plan.whole_file, plan.language)
        findings = merge_findings(f for f in report.findings if plan.keeps(f.line))
        ran = ", ".join(report.checks) or "none applied"
        summary = (
            f"Degraded review: no model could be reached ({_reason(error)}), so only static "
            f"checks ran ({ran}); {len(findings)} finding(s)."
        )
        return Review(
            summary=summary,
            score=static_score(findings),
            findings=findings,
            degraded=True,
            model=STATIC_MODEL,
        )


def merge_findings(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per problem (see the module rules), sorted by line then severity."""
    kept: list[Finding] = []
    for finding in findings:
        twin = next((i for i, k in enumerate(kept) if _same_problem(k, finding)), None)
        if twin is None:
            kept.append(finding)
            continue
        first, second = kept[twin], finding
        best, other = (
            (second, first)
            if SEVERITY_RANK[second.severity] > SEVERITY_RANK[first.severity]
            else (first, second)
        )
        kept[twin] = best.model_copy(update={"suggestion": best.suggestion or other.suggestion})
    return sorted(kept, key=lambda f: (f.line or 0, -SEVERITY_RANK[f.severity]))


def _same_problem(a: Finding, b: Finding) -> bool:
    if a.line != b.line or a.category.strip().lower() != b.category.strip().lower():
        return False
    x, y = _words(a.message), _words(b.message)
    return x == y or x in y or y in x or difflib.SequenceMatcher(None, x, y).ratio() >= 0.75


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _merge(parts: list[_Part]) -> Review:
    weights = [len(p.chunk.lines) for p in parts]
    score = round(sum(p.score * w for p, w in zip(parts, weights, strict=True)) / sum(weights))
    by_target: Counter[str] = Counter()
    for part, weight in zip(parts, weights, strict=True):
        by_target[part.target] += weight
    if len(parts) == 1:
        summary = parts[0].summary
    else:
        pieces = [f"Lines {p.chunk.first}-{p.chunk.last}: {_short(p.summary)}" for p in parts]
        summary = f"Reviewed in {len(parts)} parts. " + " ".join(pieces)
    if any(p.simulated for p in parts) and not summary.startswith(SIMULATED):
        summary = f"{SIMULATED} {summary}"
    findings = merge_findings(f for p in parts for f in p.findings)
    return Review(
        summary=summary,
        score=min(100, max(0, score)),
        findings=findings,
        degraded=False,
        model=by_target.most_common(1)[0][0],
    )


def _short(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _reason(error: BulwarkError) -> str:
    failures = getattr(error, "failures", None)
    if failures:
        return "; ".join(f"{f.target}: {f.category.value}" for f in failures)
    return error.category.value


__all__ = ["ReviewInput", "ReviewerGPT", "merge_findings"]
