"""Static checks for degraded reviews: ast and ruff on stdin, never running the code."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agents.results import Finding
from agents.static_analysis import (
    COVERAGE,
    StaticAnalyzer,
    find_ruff,
    grade,
    score,
    syntax_findings,
)

RUFF = find_ruff()


def test_a_syntax_error_is_a_major_finding_on_its_line() -> None:
    [finding] = syntax_findings("import os\n\ndef f(:\n    pass\n")
    assert (finding.severity, finding.line, finding.category) == ("major", 3, "syntax")
    assert syntax_findings("x = '\\d'\n") == []  # an invalid escape warns; it still parses
    [past_the_end] = syntax_findings("x = (\n")
    assert past_the_end.line == 1  # clamped to the code's lines
    assert "null bytes" in syntax_findings("a = 1\0")[0].message


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("F401", ("minor", "maintainability")),
        ("F821", ("major", "bug")),
        ("F632", ("major", "bug")),
        ("F601", ("major", "bug")),
        ("E999", ("major", "syntax")),
        ("E711", ("info", "style")),
        ("W291", ("info", "style")),
        ("B006", ("minor", "bug")),
        ("X100", ("info", "style")),
    ],
)
def test_rule_families_are_graded(code: str, expected: tuple[str, str]) -> None:
    assert grade(code) == expected


def test_score_weighs_findings_but_not_coverage_notes() -> None:
    findings = [
        Finding(severity="major", line=1, category="bug", message="m"),
        Finding(severity="minor", line=2, category="bug", message="m"),
        Finding(severity="info", category=COVERAGE, message="only syntax"),
    ]
    assert score(findings) == 84
    assert score([Finding(severity="critical", category="x", message="m")] * 5) == 0


async def test_ruff_findings_carry_rule_line_and_fix(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    code = (
        "import os\n"
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "def f(items=[]):\n"
        "    return undefined_name\n"
    )
    report = await StaticAnalyzer(ruff=RUFF).analyze(code, "python")
    assert report.checks == ["python syntax", "ruff (E,F,W,B)"]
    assert [(f.line, f.severity, f.message) for f in report.findings] == [
        (1, "minor", "`os` imported but unused (ruff F401)"),
        (3, "minor", "Do not use mutable data structures for argument defaults (ruff B006)"),
        (4, "major", "Undefined name `undefined_name` (ruff F821)"),
    ]
    assert report.findings[0].suggestion == "Remove unused import: `os`"
    assert not marker.exists()  # read, never run


async def test_ruff_syntax_errors_are_left_to_ast() -> None:
    report = await StaticAnalyzer(ruff=RUFF).analyze("def f(:\n    pass\n", "python")
    assert [(f.line, f.category) for f in report.findings] == [(1, "syntax")]


async def test_without_ruff_only_the_syntax_is_checked() -> None:
    report = await StaticAnalyzer(ruff=None).analyze("import os\n", "python")
    assert report.checks == ["python syntax"]
    assert [(f.severity, f.category) for f in report.findings] == [("info", COVERAGE)]
    assert "ruff is not installed" in report.findings[0].message


def fake_ruff(tmp_path: Path, body: str) -> str:
    script = tmp_path / "ruff"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.mark.parametrize(
    ("body", "seconds", "expected"),
    [
        ("exec sleep 5", 0.2, "took longer than 0.2 s"),
        ("echo 'ruff: bad option' >&2; exit 2", 5.0, "exit status 2: ruff: bad option"),
        ("echo 'not json'", 5.0, "unreadable output"),
    ],
)
async def test_a_failing_ruff_leaves_the_syntax_check_and_a_note(
    tmp_path: Path, body: str, seconds: float, expected: str
) -> None:
    analyzer = StaticAnalyzer(ruff=fake_ruff(tmp_path, body), timeout=seconds)
    report = await analyzer.analyze("def f(:\n", "python")
    assert [f.category for f in report.findings] == ["syntax", COVERAGE]
    assert expected in report.findings[1].message
    assert report.checks == ["python syntax"]


async def test_a_missing_executable_is_a_note() -> None:
    report = await StaticAnalyzer(ruff="/nonexistent/ruff").analyze("x = 1\n", "python")
    assert "did not start" in report.findings[0].message


async def test_other_languages_get_one_clear_note() -> None:
    report = await StaticAnalyzer(ruff=RUFF).analyze("fn main() {}", "rust")
    assert report.checks == []
    [note] = report.findings
    assert (note.severity, note.line, note.category) == ("info", None, COVERAGE)
    assert "Only a degraded review was possible" in note.message
