"""What one review request shows the model: numbered lines of the new file, in chunks that fit
a token budget, for a whole file or for the changed regions of a unified diff.

Rules:

* Size is estimated, not counted: a line costs ``len(line) / 4`` tokens plus two for the line
  number the listing shows.
* A chunk is cut on line boundaries only. Python is preferably cut before a top-level ``def``
  or ``class`` (with its decorators), then before any top-level statement; other languages
  before a line that follows a blank one; a diff between two changed regions. A preferred cut
  is taken only where it leaves the chunk at least half full; otherwise the chunk is cut at the
  budget. A single line longer than the budget is a chunk of its own.
* Line numbers are the file's own (1-based; for a diff, the new file's), so findings need no
  offset arithmetic and each chunk knows the span it showed.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

LINE_PREFIX_TOKENS = 2
"""Tokens the listing adds per line (``"  1234 | "``), counted in the estimate."""

NumberedLine = tuple[int, str]


@dataclass(frozen=True, slots=True)
class Chunk:
    """Lines one request reviews, in order. Numbers increase but may skip (a diff shows only
    the regions around its changes)."""

    lines: tuple[NumberedLine, ...]
    changed: frozenset[int] = frozenset()
    """Lines a diff added or changed (empty for a whole-file review)."""

    @property
    def first(self) -> int:
        return self.lines[0][0]

    @property
    def last(self) -> int:
        return self.lines[-1][0]

    def shows(self, line: int) -> bool:
        """Whether ``line`` lies within the span this chunk showed."""
        return self.first <= line <= self.last


def estimate_tokens(text: str) -> int:
    """Approximate tokens: characters / 4, rounded up."""
    return math.ceil(len(text) / 4)


def line_cost(text: str) -> int:
    return estimate_tokens(text) + LINE_PREFIX_TOKENS


def numbered(code: str) -> list[NumberedLine]:
    """The lines of ``code`` with their 1-based numbers, as ``ast`` and ruff count them (a final
    newline does not start a line; ``\\r\\n`` endings are dropped)."""
    texts = code.split("\n")
    if len(texts) > 1 and texts[-1] == "":
        texts.pop()
    return [(number, text.removesuffix("\r")) for number, text in enumerate(texts, 1)]


def python_cut_points(code: str) -> tuple[set[int], set[int]]:
    """(preferred, acceptable) lines a Python file may be cut before: top-level functions and
    classes (from their first decorator), and any top-level statement. Empty when the code
    does not parse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes etc. are the code's business
            tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set(), set()
    definitions = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    preferred: set[int] = set()
    acceptable: set[int] = set()
    for node in tree.body:
        start = node.lineno
        if isinstance(node, definitions):
            start = min([start, *(d.lineno for d in node.decorator_list)])
            preferred.add(start)
        acceptable.add(start)
    return preferred, acceptable


def blank_cut_points(lines: Sequence[NumberedLine]) -> set[int]:
    """Lines at the left margin that follow a blank line (paragraph starts)."""
    return {
        lines[i][0]
        for i in range(1, len(lines))
        if not lines[i - 1][1].strip() and lines[i][1][:1] not in (" ", "\t", "")
    }


def split_lines(
    lines: Sequence[NumberedLine],
    budget_tokens: int,
    *,
    preferred: Iterable[int] = (),
    acceptable: Iterable[int] = (),
    changed: Iterable[int] = (),
) -> list[Chunk]:
    """Greedy cut of ``lines`` into chunks of at most ``budget_tokens`` (see module rules)."""
    if budget_tokens < 1:
        raise ValueError(f"the chunk budget must be at least 1 token, got {budget_tokens}")
    points = (set(preferred), set(acceptable))
    changed_set = frozenset(changed)
    chunks: list[Chunk] = []
    start, used = 0, 0
    for i, (_, text) in enumerate(lines):
        cost = line_cost(text)
        while i > start and used + cost > budget_tokens:
            cut = _cut(lines, start, i, budget_tokens, points)
            chunks.append(_chunk(lines[start:cut], changed_set))
            start = cut
            used = sum(line_cost(t) for _, t in lines[start:i])
        used += cost
    if start < len(lines):
        chunks.append(_chunk(lines[start:], changed_set))
    return chunks


def _cut(
    lines: Sequence[NumberedLine],
    start: int,
    end: int,
    budget: int,
    points: tuple[set[int], ...],
) -> int:
    """Where to end the chunk that starts at ``lines[start]`` and cannot take ``lines[end]``:
    before the last preferred point that keeps it at least half full, else before the last
    acceptable one, else before ``lines[end]``."""
    for candidates in points:
        used, latest = 0, None
        for j in range(start, end + 1):
            if j > start and lines[j][0] in candidates and used * 2 >= budget:
                latest = j
            used += line_cost(lines[j][1])
        if latest is not None:
            return latest
    return end


def _chunk(lines: Sequence[NumberedLine], changed: frozenset[int]) -> Chunk:
    return Chunk(tuple(lines), changed & {number for number, _ in lines})


def split_code(code: str, budget_tokens: int, *, language: str | None = None) -> list[Chunk]:
    """``code`` in chunks of at most ``budget_tokens`` (a lone long line may exceed it)."""
    lines = numbered(code)
    if language == "python":
        preferred, acceptable = python_cut_points(code)
    else:
        preferred, acceptable = set(), blank_cut_points(lines)
    return split_lines(lines, budget_tokens, preferred=preferred, acceptable=acceptable)


@dataclass
class FileDiff:
    """One file of a unified diff, new side only: the lines its hunks show, by new line
    number, and the changed lines (added ones; a deletion marks the line now in its place)."""

    path: str | None
    lines: dict[int, str] = field(default_factory=dict)
    changed: set[int] = field(default_factory=set)

    def matches(self, code_lines: Sequence[NumberedLine]) -> bool:
        """Whether ``code_lines`` is this diff's new file (every line shown is there)."""
        texts = dict(code_lines)
        return bool(self.lines) and all(texts.get(n) == t for n, t in self.lines.items())


_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def parse_unified_diff(text: str) -> list[FileDiff]:
    """The files of a unified diff (``git diff``, ``diff -u``; file headers optional). Raises
    ``ValueError`` when there is no hunk."""
    files: list[FileDiff] = []
    old_left = new_left = new_line = 0
    for raw in text.split("\n"):
        raw = raw.removesuffix("\r")
        if old_left > 0 or new_left > 0:
            tag, body = raw[:1], raw[1:]
            if tag == "+":
                files[-1].lines[new_line] = body
                files[-1].changed.add(new_line)
                new_line, new_left = new_line + 1, new_left - 1
                continue
            if tag == "-":
                files[-1].changed.add(new_line)
                old_left -= 1
                continue
            if tag in (" ", ""):
                files[-1].lines[new_line] = body
                new_line, old_left, new_left = new_line + 1, old_left - 1, new_left - 1
                continue
            if tag == "\\":  # "\ No newline at end of file"
                continue
            old_left = new_left = 0  # malformed hunk: read the line as a header
        if raw.startswith("+++ "):
            path = raw[4:].split("\t")[0].strip()
            files.append(FileDiff(None if path == "/dev/null" else re.sub(r"^[ab]/", "", path)))
        elif match := _HUNK.match(raw):
            if not files:
                files.append(FileDiff(None))
            old_left = int(match.group(1) or 1)
            new_line = int(match.group(2))
            new_left = int(match.group(3) or 1)
    files = [f for f in files if f.lines or f.changed]
    if not files:
        raise ValueError("the diff has no hunk (expected the unified format, with @@ headers)")
    return files


def near(lines: Iterable[int], radius: int) -> set[int]:
    """Every line number within ``radius`` of one of ``lines``."""
    return {n for line in lines for n in range(line - radius, line + radius + 1) if n >= 1}


def split_diff(
    diff: FileDiff,
    budget_tokens: int,
    *,
    new_file: Sequence[NumberedLine] | None = None,
    context: int = 3,
) -> list[Chunk]:
    """The changed regions of ``diff`` in chunks: the lines its hunks show, or, given the whole
    ``new_file``, every line within ``context`` of a change. Regions start preferred cuts."""
    if new_file is not None:
        wanted = near(diff.changed, context)
        lines = [(n, t) for n, t in new_file if n in wanted]
    else:
        lines = sorted(diff.lines.items())
    starts = {lines[i][0] for i in range(1, len(lines)) if lines[i][0] != lines[i - 1][0] + 1}
    return split_lines(lines, budget_tokens, preferred=starts, changed=diff.changed)


__all__ = [
    "LINE_PREFIX_TOKENS",
    "Chunk",
    "FileDiff",
    "NumberedLine",
    "blank_cut_points",
    "estimate_tokens",
    "line_cost",
    "near",
    "numbered",
    "parse_unified_diff",
    "python_cut_points",
    "split_code",
    "split_diff",
    "split_lines",
]
