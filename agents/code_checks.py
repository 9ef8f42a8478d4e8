"""Static checks of generated code. Nothing here runs the code: Python is parsed with
:func:`ast.parse` and linted by ruff reading the code on stdin; other languages are not
checked.

The result is a plain dict, stored as ``CodeResult.checks``::

    {"syntax": "ok", "ruff": {"issues": 1, "messages": ["F401 line 1: `os` imported but unused"]}}
    {"syntax": "error: line 2: invalid syntax", "ruff": "skipped (syntax error)"}
    {"syntax": "not checked (language javascript)"}

``ruff`` is a string instead of counts when ruff is not installed, timed out or failed; a
missing linter never fails a task.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from agents.languages import normalize_language

#: ruff rules applied to generated code: pyflakes, bugbear, and pycodestyle's error subset.
#: ``--isolated`` keeps the project's own ruff configuration out of it.
RUFF_SELECT = "E4,E7,E9,F,B"
#: Seconds ruff may take before it is killed.
RUFF_TIMEOUT = 10.0
#: At most this many ruff messages are kept (``issues`` still counts all of them).
MAX_MESSAGES = 20


def python_syntax(code: str) -> str:
    """``"ok"`` when ``code`` parses as Python, else ``"error: line N: message"``."""
    try:
        ast.parse(code, filename="snippet.py")
    except SyntaxError as exc:
        return f"error: line {exc.lineno or 1}: {exc.msg}"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"error: line 1: the code cannot be parsed ({type(exc).__name__})"
    return "ok"


def find_ruff() -> str | None:
    """The ruff executable: the one installed beside this Python, else one on ``PATH``."""
    beside = shutil.which("ruff", path=str(Path(sys.executable).parent))
    return beside or shutil.which("ruff")


def ruff_summary(report: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"issues": n, "messages": [...]}`` from ruff's JSON report."""
    messages = []
    for item in report[:MAX_MESSAGES]:
        row = (item.get("location") or {}).get("row")
        code = item.get("code") or "error"
        messages.append(f"{code} line {row}: {item.get('message', '')}")
    return {"issues": len(report), "messages": messages}


async def run_ruff(
    code: str, *, ruff: str | None = None, ruff_timeout: float = RUFF_TIMEOUT
) -> dict[str, Any] | str:
    """Lint ``code`` with ruff on stdin (no cache, no project configuration).

    Returns the summary of :func:`ruff_summary`, or a string saying why there is none.
    """
    executable = ruff or find_ruff()
    if executable is None:
        return "not available (ruff is not installed)"
    try:
        process = await asyncio.create_subprocess_exec(
            executable,
            "check",
            "--isolated",
            "--no-cache",
            "--select",
            RUFF_SELECT,
            "--output-format",
            "json",
            "--stdin-filename",
            "snippet.py",
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return f"not available ({exc.strerror or exc})"
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(code.encode()), ruff_timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return f"timed out after {ruff_timeout:g} s"
    if process.returncode not in (0, 1):  # 1: issues found; 2: ruff itself failed
        detail = stderr.decode(errors="replace").strip().splitlines()
        return f"failed (exit {process.returncode}): {detail[-1] if detail else 'no output'}"
    try:
        report = json.loads(stdout or b"[]")
    except json.JSONDecodeError:
        return "failed: ruff's report is not JSON"
    return ruff_summary(report if isinstance(report, list) else [])


async def check_code(
    code: str, language: str, *, ruff: str | None = None, ruff_timeout: float = RUFF_TIMEOUT
) -> dict[str, Any]:
    """The checks of ``code`` (see the module docstring). Never runs ``code``."""
    name = normalize_language(language)
    if name != "python":
        return {"syntax": f"not checked (language {name})"}
    syntax = python_syntax(code)
    if syntax != "ok":
        return {"syntax": syntax, "ruff": "skipped (syntax error)"}
    return {"syntax": syntax, "ruff": await run_ruff(code, ruff=ruff, ruff_timeout=ruff_timeout)}


def syntax_failed(checks: dict[str, Any]) -> bool:
    """Whether the checks found a syntax error (the one check failure that forces a
    revision; ruff findings are passed on to the model but do not force one)."""
    return str(checks.get("syntax", "")).startswith("error")


__all__ = [
    "MAX_MESSAGES",
    "RUFF_SELECT",
    "RUFF_TIMEOUT",
    "check_code",
    "find_ruff",
    "python_syntax",
    "ruff_summary",
    "run_ruff",
    "syntax_failed",
]
