"""Task results as plain text for a terminal (``bulwark review``, ``bulwark code``)."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Mapping
from typing import Any, TextIO

SEVERITY_ORDER = ("critical", "major", "minor", "info")
FINISHED = ("succeeded", "failed", "cancelled")


def _wrap(text: str, indent: str) -> str:
    return textwrap.fill(text, width=96, initial_indent=indent, subsequent_indent=indent)


def render_review(review: Mapping[str, Any], *, title: str | None = None) -> str:
    """A review (design.md, "Review and code results") as readable text."""
    lines: list[str] = []
    heading = f"Review of {title}" if title else "Review"
    lines.append(f"{heading}: score {review.get('score', '?')}/100 ({review.get('model', '?')})")
    if review.get("degraded"):
        lines.append("  (degraded: no model could be reached; static checks only)")
    summary = str(review.get("summary") or "").strip()
    if summary:
        lines += ["", _wrap(summary, "")]
    findings = list(review.get("findings") or [])
    counts = {s: sum(1 for f in findings if f.get("severity") == s) for s in SEVERITY_ORDER}
    tally = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    lines += ["", f"Findings: {len(findings)}" + (f" ({tally})" if tally else "")]
    for finding in findings:
        where = f"line {finding['line']}" if finding.get("line") else "whole file"
        lines.append(
            f"  [{finding.get('severity', '?')}] {where} · {finding.get('category', '')}: "
            f"{finding.get('message', '')}"
        )
        if finding.get("suggestion"):
            lines.append(_wrap(f"fix: {finding['suggestion']}", "      "))
    return "\n".join(lines)


def render_code(result: Mapping[str, Any]) -> str:
    """A code result: the code, the explanation, the checks and the review."""
    language = result.get("language", "")
    lines = [
        f"Code ({language}, {result.get('model', '?')})",
        "",
        f"```{language}",
        str(result.get("code", "")).rstrip("\n"),
        "```",
    ]
    explanation = str(result.get("explanation") or "").strip()
    if explanation:
        lines += ["", _wrap(explanation, "")]
    checks = result.get("checks") or {}
    if checks:
        lines += ["", "Checks: " + json.dumps(checks, sort_keys=True, default=str)]
    review = result.get("review")
    if isinstance(review, Mapping):
        lines += ["", render_review(review, title="the code")]
    return "\n".join(lines)


def render_task(task: Mapping[str, Any], *, title: str | None = None) -> str:
    """A finished task: its result when it succeeded, otherwise why not."""
    status = task.get("status")
    result = task.get("result")
    if status == "succeeded" and isinstance(result, Mapping):
        if task.get("type") == "review":
            return render_review(result, title=title)
        if task.get("type") == "code":
            return render_code(result)
        return json.dumps(result, indent=2, sort_keys=True)
    error = task.get("error") or {}
    detail = f": {error.get('code')}: {error.get('message')}" if error else ""
    return f"task {task.get('id')} {status}{detail}"


class Progress:
    """Shows a waiting task's status on ``stream`` (stderr): in place on a terminal,
    otherwise one line per change of status (and every ten seconds)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._last: tuple[str, float] | None = None

    def __call__(self, task: Mapping[str, Any], elapsed: float) -> None:
        status = str(task.get("status"))
        line = f"task {str(task.get('id'))[:8]}: {status} ({elapsed:.0f} s)"
        if self._tty:
            end = "\n" if status in FINISHED else ""
            print(f"\r{line}\x1b[K", end=end, file=self._stream, flush=True)
        elif self._last is None or self._last[0] != status or elapsed - self._last[1] >= 10:
            print(line, file=self._stream, flush=True)
            self._last = (status, elapsed)


__all__ = ["FINISHED", "Progress", "render_code", "render_review", "render_task"]
