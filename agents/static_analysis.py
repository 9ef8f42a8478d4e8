"""Static checks that review code without a model (and never execute it): what a degraded
review is made of.

Rules:

* Python: a syntax error, from ``ast.parse``, is a ``major`` finding on its line. Then ruff
  (rules ``E,F,W,B``, no configuration file, no cache) reads the code from standard input;
  its findings are graded by rule family (:data:`RULE_GRADES`: the most specific prefix wins).
  Ruff's own syntax errors are dropped, since ``ast`` already reported the first one.
* If ruff is missing, fails or overruns its timeout, the syntax check stands alone and an
  ``info`` finding says so.
* Any other language: one ``info`` finding saying only a degraded review was possible.
* The score is 100 minus a weight per finding (:data:`SEVERITY_WEIGHTS`), at least 0; notes
  about the checks themselves (category ``coverage``) weigh nothing.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import functools
import importlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from typing import Any

from agents.results import Finding, Severity

DEFAULT_RULES = ("E", "F", "W", "B")
COVERAGE = "coverage"
"""Category of the findings that describe what was (not) checked."""

#: Rule-code prefix → (severity, category); the longest matching prefix decides.
RULE_GRADES: dict[str, tuple[Severity, str]] = {
    "E9": ("major", "syntax"),
    "F63": ("major", "bug"),  # comparisons that are always wrong (`is` with a literal, ...)
    "F7": ("major", "bug"),  # `break`/`return`/`await` where they cannot run
    "F82": ("major", "bug"),  # undefined names
    "F401": ("minor", "maintainability"),  # unused import
    "F811": ("minor", "maintainability"),  # redefinition of an unused name
    "F841": ("minor", "maintainability"),  # unused local variable
    "F": ("major", "bug"),
    "B": ("minor", "bug"),
    "E": ("info", "style"),
    "W": ("info", "style"),
}
SEVERITY_WEIGHTS: dict[str, int] = {"info": 1, "minor": 4, "major": 12, "critical": 25}


@dataclass(frozen=True, slots=True)
class StaticReport:
    """What the static checks found, and which checks ran (e.g. ``["python syntax", "ruff"]``)."""

    findings: list[Finding] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)


@functools.cache
def find_ruff() -> str | None:
    """The ruff executable: the one of the ``ruff`` package, else on ``PATH``, else ``None``."""
    with contextlib.suppress(ImportError, FileNotFoundError):
        path: Any = importlib.import_module("ruff").find_ruff_bin()
        return str(path)
    return shutil.which("ruff")


def grade(code: str) -> tuple[Severity, str]:
    """Severity and category for a ruff rule code (see :data:`RULE_GRADES`)."""
    for length in range(len(code), 0, -1):
        if code[:length] in RULE_GRADES:
            return RULE_GRADES[code[:length]]
    return "info", "style"


def score(findings: list[Finding]) -> int:
    """100 minus the weight of each finding, at least 0 (coverage notes weigh nothing)."""
    lost = sum(SEVERITY_WEIGHTS[f.severity] for f in findings if f.category != COVERAGE)
    return max(0, 100 - lost)


def syntax_findings(code: str) -> list[Finding]:
    """The first syntax error of Python ``code`` as a finding (none when it parses)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes etc. are not syntax errors
            ast.parse(code)
    except SyntaxError as exc:
        last = max(1, code.count("\n") + (not code.endswith("\n")))
        line = min(max(exc.lineno or 1, 1), last)
        return [
            Finding(
                severity="major",
                line=line,
                category="syntax",
                message=f"Syntax error: {exc.msg}.",
                suggestion="Fix the syntax; nothing else in the file can run until then.",
            )
        ]
    except (ValueError, RecursionError, MemoryError) as exc:
        return [
            Finding(
                severity="major",
                category="syntax",
                message=f"The code cannot be parsed as Python: {exc}.",
            )
        ]
    return []


@dataclass(frozen=True, slots=True)
class StaticAnalyzer:
    """Runs the checks of the module rules. ``ruff`` is the executable (``None``: not
    available); it gets ``timeout`` seconds per file."""

    ruff: str | None
    rules: tuple[str, ...] = DEFAULT_RULES
    timeout: float = 10.0
    line_length: int = 100

    @classmethod
    def default(cls) -> StaticAnalyzer:
        return cls(ruff=find_ruff())

    async def analyze(self, code: str, language: str) -> StaticReport:
        if language != "python":
            note = (
                f"Only a degraded review was possible: there are no static checks for "
                f"{language}, so this code was not examined."
            )
            return StaticReport([Finding(severity="info", category=COVERAGE, message=note)])
        findings = syntax_findings(code)
        checks = ["python syntax"]
        if self.ruff is None:
            findings.append(_note("ruff is not installed, so only the syntax was checked."))
            return StaticReport(findings, checks)
        try:
            findings += await self._ruff(code, self.ruff)
            checks.append(f"ruff ({','.join(self.rules)})")
        except RuffFailed as failure:
            findings.append(
                _note(f"ruff could not check the code ({failure}); only the syntax was checked.")
            )
        return StaticReport(findings, checks)

    async def _ruff(self, code: str, ruff: str) -> list[Finding]:
        args = [
            "check",
            "--isolated",
            "--no-cache",
            "--output-format",
            "json",
            "--select",
            ",".join(self.rules),
            "--line-length",
            str(self.line_length),
            "--stdin-filename",
            "review_input.py",
            "-",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUFF_")}
        try:
            process = await asyncio.create_subprocess_exec(
                ruff,
                *args,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise RuffFailed(f"it did not start: {exc.strerror or exc}") from exc
        try:
            out, err = await asyncio.wait_for(process.communicate(code.encode()), self.timeout)
        except TimeoutError:
            raise RuffFailed(f"it took longer than {self.timeout:g} s") from None
        finally:
            if process.returncode is None:  # timed out or cancelled: never leave it running
                process.kill()
                await process.wait()
        if process.returncode not in (0, 1):
            detail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            raise RuffFailed(f"exit status {process.returncode}: {detail[0][:200]}")
        try:
            return [f for item in json.loads(out) if (f := _ruff_finding(item)) is not None]
        except (ValueError, TypeError, KeyError) as exc:
            raise RuffFailed(f"unreadable output: {exc}") from None


class RuffFailed(Exception):
    """Ruff did not produce a usable answer."""


def _ruff_finding(item: dict[str, Any]) -> Finding | None:
    code = item.get("code")
    if not code or code == "invalid-syntax" or code.startswith("E999"):
        return None  # syntax errors: reported by ast
    severity, category = grade(code)
    fix = item.get("fix") or {}
    return Finding(
        severity=severity,
        line=max(1, int(item["location"]["row"])),
        category=category,
        message=f"{item['message']} (ruff {code})",
        suggestion=fix.get("message"),
    )


def _note(message: str) -> Finding:
    return Finding(severity="info", category=COVERAGE, message=message)


__all__ = [
    "COVERAGE",
    "DEFAULT_RULES",
    "RULE_GRADES",
    "SEVERITY_WEIGHTS",
    "RuffFailed",
    "StaticAnalyzer",
    "StaticReport",
    "find_ruff",
    "grade",
    "score",
    "syntax_findings",
]
