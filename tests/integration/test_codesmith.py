"""Codesmith against the fake provider server: the write → check → review → revise loop, its
limits, the history it leaves, and the simulator end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pydantic import ValidationError

from agents import AgentContext, AgentRegistry
from agents.codesmith import CodeInput, Codesmith, strip_fences
from agents.results import CodeResult
from backend.config import Settings
from backend.core.errors import ErrorCategory, PermanentError
from backend.llm.gateway import LLMGateway
from tests.fakes.behaviours import Behaviour, auth_error, reply_json
from tests.fakes.provider_server import FakeProviderServer
from tests.integration.gateway_helpers import OPENAI, gateway_settings, history

REVIEWER = "openai:gpt-4.1-mini"
ROUTES = {"code": [OPENAI], "review": [REVIEWER]}

GOOD = 'def add(a: int, b: int) -> int:\n    """Sum of a and b."""\n    return a + b\n'
BETTER = 'def add(a: int, b: int) -> int:\n    """Sum of a and b (checked)."""\n    return a + b\n'
BROKEN = "def add(a, b:\n    return a + b\n"

Run = Callable[..., Awaitable[CodeResult]]


def code(source: str, explanation: str = "Adds two numbers.") -> Behaviour:
    return reply_json({"language": "python", "code": source, "explanation": explanation})


def review(*severities: str, summary: str = "Reviewed.") -> Behaviour:
    findings = [
        {
            "severity": severity,
            "line": 1,
            "category": "bug",
            "message": f"A {severity} problem.",
            "suggestion": "Fix it.",
        }
        for severity in severities
    ]
    score = 40 if {"major", "critical"} & set(severities) else 95
    return reply_json({"summary": summary, "score": score, "findings": findings})


@pytest.fixture
async def gateway(
    provider_server: FakeProviderServer, sqlite_url: str
) -> AsyncIterator[LLMGateway]:
    settings = gateway_settings(provider_server, sqlite_url, ROUTES)
    gateway = await LLMGateway.create(settings, migrate=True)
    yield gateway
    await gateway.aclose()


@pytest.fixture
def run(gateway: LLMGateway) -> Run:
    async def run(**input: Any) -> CodeResult:
        ctx = AgentContext(gateway=gateway, registry=AgentRegistry.builtins(), task_id="t-1")
        return await Codesmith().execute(input, ctx)

    return run


def models(server: FakeProviderServer) -> list[str]:
    return [f"openai:{body['model']}" for body in server.bodies()]


def prompt(server: FakeProviderServer, index: int) -> str:
    return "\n".join(m["content"] for m in server.bodies()[index]["messages"])


async def test_a_critical_finding_is_revised_until_the_review_is_clean(
    run: Run, provider_server: FakeProviderServer, gateway: LLMGateway, sqlite_url: str
) -> None:
    provider_server.script(
        code(GOOD), review("critical"), code(BETTER, "Now checked."), review("minor")
    )
    result = await run(instructions="Add two integers.", max_review_rounds=2)

    assert models(provider_server) == [OPENAI, REVIEWER, OPENAI, REVIEWER]
    assert (result.code, result.explanation, result.model) == (BETTER, "Now checked.", OPENAI)
    assert result.checks == {"syntax": "ok", "ruff": {"issues": 0, "messages": []}}
    assert result.review is not None
    assert result.review.model == REVIEWER
    assert [f.severity for f in result.review.findings] == ["minor"]
    revise = prompt(provider_server, 2)
    assert "A critical problem." in revise
    assert GOOD.strip() in revise
    assert "Add two integers." in revise

    await gateway.flush_history()
    calls, _ = await history(sqlite_url)
    assert [(c.agent, c.route, c.task_id) for c in calls] == [
        ("codesmith", "code", "t-1"),
        ("reviewer", "review", "t-1"),
        ("codesmith", "code", "t-1"),
        ("reviewer", "review", "t-1"),
    ]


async def test_the_loop_stops_at_the_round_limit(
    run: Run, provider_server: FakeProviderServer
) -> None:
    provider_server.script(
        code(GOOD), review("critical"), code(BETTER), review("major", summary="Still bad.")
    )
    result = await run(instructions="Add two integers.", max_review_rounds=2)

    assert provider_server.request_count == 4
    assert result.code == BETTER
    assert result.review is not None
    assert result.review.summary == "Still bad."
    assert [f.severity for f in result.review.findings] == ["major"]


async def test_a_clean_first_review_ends_the_loop(
    run: Run, provider_server: FakeProviderServer
) -> None:
    provider_server.script(code(GOOD), review("info", "minor"))
    result = await run(instructions="Add two integers.", max_review_rounds=5)
    assert models(provider_server) == [OPENAI, REVIEWER]
    assert result.code == GOOD


async def test_a_syntax_error_triggers_a_revision(
    run: Run, provider_server: FakeProviderServer
) -> None:
    provider_server.script(code(BROKEN), review(), code(GOOD), review())
    result = await run(instructions="Add two integers.", max_review_rounds=2)

    assert models(provider_server) == [OPENAI, REVIEWER, OPENAI, REVIEWER]
    assert "error: line 1" in prompt(provider_server, 2)
    assert (result.code, result.checks["syntax"]) == (GOOD, "ok")


async def test_the_default_is_one_review_and_no_revision(
    run: Run, provider_server: FakeProviderServer
) -> None:
    provider_server.script(code(BROKEN), review("critical"))
    result = await run(instructions="Add two integers.")
    assert provider_server.request_count == 2
    assert result.code == BROKEN
    assert result.checks == {
        "syntax": "error: line 1: '(' was never closed",
        "ruff": "skipped (syntax error)",
    }
    assert result.review is not None
    assert result.review.findings[0].severity == "critical"


async def test_zero_rounds_skips_the_review(run: Run, provider_server: FakeProviderServer) -> None:
    provider_server.script(code(GOOD))
    result = await run(instructions="Add two integers.", max_review_rounds=0)
    assert provider_server.request_count == 1
    assert (result.review, result.checks["syntax"]) == (None, "ok")


async def test_a_degraded_review_is_kept_without_looping(
    provider_server: FakeProviderServer, sqlite_url: str
) -> None:
    provider_server.set_default(auth_error(), provider="anthropic")
    provider_server.script(code("password = 'hunter2'\nresult = eval(input())\n"))
    routes = {"code": [OPENAI], "review": ["anthropic:claude-haiku-4-5"]}
    gateway = await LLMGateway.create(
        gateway_settings(provider_server, sqlite_url, routes), migrate=True
    )
    try:
        ctx = AgentContext(gateway=gateway, registry=AgentRegistry.builtins())
        result = await Codesmith().execute(
            {"instructions": "Evaluate the input.", "max_review_rounds": 3}, ctx
        )
    finally:
        await gateway.aclose()
    assert provider_server.count(provider="openai") == 1
    assert result.review is not None
    assert result.review.degraded
    assert result.model == OPENAI


async def test_a_failed_revision_returns_the_last_reviewed_version(
    run: Run, provider_server: FakeProviderServer
) -> None:
    provider_server.script(code(GOOD), review("critical"), auth_error())
    result = await run(instructions="Add two integers.", max_review_rounds=2)
    assert provider_server.request_count == 3
    assert result.code == GOOD
    assert result.review is not None
    assert result.review.findings[0].severity == "critical"
    assert result.checks["revision"] == "failed (auth_error): returned the last reviewed version"


async def test_context_and_language_reach_the_prompt_and_fences_are_stripped(
    run: Run, provider_server: FakeProviderServer
) -> None:
    provider_server.script(code(f"```python\n{GOOD}```"), review())
    result = await run(
        instructions="Extend it.", language="Python", context="def sub(a, b):\n    return a - b"
    )
    first = prompt(provider_server, 0)
    assert "def sub(a, b):" in first
    assert "Language: python" in first
    assert result.code == GOOD.rstrip("\n")


async def test_the_simulator_route_works_end_to_end(sqlite_url: str) -> None:
    gateway = await LLMGateway.create(Settings(database_url=sqlite_url), migrate=True)
    try:
        ctx = AgentContext(gateway=gateway, registry=AgentRegistry.builtins())
        result = await Codesmith().execute(
            CodeInput(instructions="Write a function that reverses a string."), ctx
        )
    finally:
        await gateway.aclose()
    assert result.model == "sim:coder"
    assert result.language == "python"
    assert result.checks["syntax"] == "ok"
    assert "[simulated]" in result.explanation
    assert result.review is not None
    assert result.review.model == "sim:reviewer"


def test_input_validation_and_schema_example() -> None:
    with pytest.raises(ValidationError):
        CodeInput(instructions="   ")
    with pytest.raises(ValidationError):
        CodeInput(instructions="x", max_review_rounds=6)
    schema = CodeInput.model_json_schema()
    assert schema["required"] == ["instructions"]
    assert CodeInput.model_validate(schema["examples"][0]).max_review_rounds == 1
    assert all(prop.get("description") for prop in schema["properties"].values())


def test_strip_fences() -> None:
    assert strip_fences("```py\nx = 1\n```") == "x = 1"
    assert strip_fences("x = 1\n") == "x = 1\n"
    assert strip_fences("a = '```'\n") == "a = '```'\n"


async def test_long_instructions_still_fit_the_reviewers_input(
    run: Run, provider_server: FakeProviderServer
) -> None:
    provider_server.script(code(GOOD), review())
    instructions = "Add two integers, carefully. " * 300
    result = await run(instructions=instructions)
    assert result.review is not None
    assert len(instructions) > 4000
    assert provider_server.request_count == 2


async def test_an_answer_without_code_is_invalid_output(
    run: Run, provider_server: FakeProviderServer
) -> None:
    provider_server.script(code(GOOD), review("critical"), code("  "), code(""))
    result = await run(instructions="Add two integers.", max_review_rounds=3)
    assert provider_server.request_count == 4  # the blank answer, then its one repair
    assert result.code == GOOD
    assert result.checks["revision"].startswith("failed (invalid_output)")

    provider_server.script(code(""), code("\n"))
    with pytest.raises(PermanentError) as caught:
        await run(instructions="Add two integers.")
    assert caught.value.category is ErrorCategory.INVALID_OUTPUT
