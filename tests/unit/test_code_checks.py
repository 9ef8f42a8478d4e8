"""Static checks of generated code: parsed and linted, never run."""

from __future__ import annotations

import stat
from pathlib import Path

from agents.code_checks import (
    MAX_MESSAGES,
    check_code,
    python_syntax,
    ruff_summary,
    run_ruff,
    syntax_failed,
)


def fake_ruff(tmp_path: Path, script: str) -> str:
    """An executable standing in for ruff (a shell script)."""
    path = tmp_path / "fake-ruff"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_python_syntax_ok_and_error_with_line() -> None:
    assert python_syntax("def f(x):\n    return x\n") == "ok"
    assert python_syntax("x = 1\ndef f(:\n    pass\n").startswith("error: line 2: ")
    assert python_syntax("x = 'a\0b'\0").startswith("error: line 1")


async def test_python_code_is_parsed_and_linted() -> None:
    checks = await check_code("import os\n\n\ndef f():\n    return y\n", "python")
    assert checks["syntax"] == "ok"
    assert checks["ruff"]["issues"] == 2
    assert checks["ruff"]["messages"] == [
        "F401 line 1: `os` imported but unused",
        "F821 line 5: Undefined name `y`",
    ]
    assert not syntax_failed(checks)


async def test_clean_code_has_no_issues() -> None:
    checks = await check_code('def f() -> int:\n    """One."""\n    return 1\n', "py")
    assert checks == {"syntax": "ok", "ruff": {"issues": 0, "messages": []}}


async def test_the_projects_ruff_configuration_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.ruff.lint]\nselect = ["D", "T20"]\n')
    checks = await check_code("print(1)\n", "python")  # cwd is tmp_path (conftest)
    assert checks["ruff"] == {"issues": 0, "messages": []}


async def test_a_syntax_error_skips_ruff() -> None:
    checks = await check_code("def broken(:\n", "python")
    assert checks["syntax"].startswith("error: line 1: ")
    assert checks["ruff"] == "skipped (syntax error)"
    assert syntax_failed(checks)


async def test_other_languages_are_not_checked() -> None:
    checks = await check_code("function f( {", "JavaScript")
    assert checks == {"syntax": "not checked (language javascript)"}
    assert not syntax_failed(checks)


async def test_the_code_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"from pathlib import Path\n\nPath({str(marker)!r}).write_text('x')\n"
    checks = await check_code(code, "python")
    assert checks["syntax"] == "ok"
    assert not marker.exists()


async def test_missing_ruff_is_reported_not_raised(tmp_path: Path) -> None:
    result = await run_ruff("x = 1\n", ruff=str(tmp_path / "no-such-ruff"))
    assert isinstance(result, str)
    assert result.startswith("not available")


async def test_a_slow_ruff_is_killed(tmp_path: Path) -> None:
    ruff = fake_ruff(tmp_path, "exec sleep 5")
    assert await run_ruff("x = 1\n", ruff=ruff, ruff_timeout=0.2) == "timed out after 0.2 s"


async def test_a_failing_ruff_is_reported(tmp_path: Path) -> None:
    ruff = fake_ruff(tmp_path, "cat >/dev/null; echo 'error: bad option' >&2; exit 2")
    assert await run_ruff("x = 1\n", ruff=ruff) == "failed (exit 2): error: bad option"


async def test_a_report_that_is_not_json(tmp_path: Path) -> None:
    ruff = fake_ruff(tmp_path, "cat >/dev/null; echo 'oops'; exit 1")
    assert await run_ruff("x = 1\n", ruff=ruff) == "failed: ruff's report is not JSON"


def test_ruff_summary_keeps_count_and_caps_messages() -> None:
    report = [
        {"code": "F401", "message": f"m{i}", "location": {"row": i, "column": 1}}
        for i in range(MAX_MESSAGES + 5)
    ]
    summary = ruff_summary(report)
    assert summary["issues"] == MAX_MESSAGES + 5
    assert len(summary["messages"]) == MAX_MESSAGES
    assert summary["messages"][0] == "F401 line 0: m0"
    assert ruff_summary([{"code": None, "message": "bad", "location": {"row": 3}}]) == {
        "issues": 1,
        "messages": ["error line 3: bad"],
    }
