"""ReviewerGPT against the fake provider server (real OpenAI SDK, real gateway, real SQLite or
PostgreSQL history) and the simulator."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pydantic import ValidationError

from agents.chunking import split_code
from agents.context import AgentContext
from agents.languages import detect_language
from agents.registry import AgentRegistry
from agents.results import Review
from agents.reviewer import ReviewerGPT, ReviewInput
from backend.core.errors import ErrorCategory, PermanentError, TransientError
from backend.llm.gateway import LLMGateway
from tests.fakes.behaviours import bad_request, hang, reply, reply_json, server_error
from tests.fakes.provider_server import FakeProviderServer
from tests.integration.gateway_helpers import OPENAI, gateway_settings, history

MakeContext = Callable[..., Awaitable[AgentContext]]

PYTHON = "import os\n\n\ndef area(r):\n    x = 1\n    return 3.14 * r * r\n"


@pytest.fixture
async def make_context(
    provider_server: FakeProviderServer, sqlite_url: str
) -> AsyncIterator[MakeContext]:
    gateways: list[LLMGateway] = []

    async def make(routes: list[str] | None = None) -> AgentContext:
        settings = gateway_settings(
            provider_server, sqlite_url, {"review": routes or [OPENAI]}, retry_max_retries=1
        )
        gateway = await LLMGateway.create(settings, migrate=True)
        gateways.append(gateway)
        return AgentContext(gateway=gateway, registry=AgentRegistry([ReviewerGPT]), task_id="t-1")

    yield make
    for gateway in gateways:
        await gateway.aclose()


def answer(*findings: dict[str, Any], score: int = 80, summary: str = "Fine.") -> dict[str, Any]:
    return {"summary": summary, "score": score, "findings": list(findings)}


def finding(line: int | None, severity: str = "minor", **extra: Any) -> dict[str, Any]:
    return {"severity": severity, "line": line, "category": "bug", "message": "Problem."} | extra


def user_prompt(server: FakeProviderServer, index: int = 0) -> str:
    messages = server.requests()[index].body["messages"]
    return str(messages[-1]["content"])


async def test_a_scripted_review_comes_back_with_the_model_target(
    make_context: MakeContext, provider_server: FakeProviderServer
) -> None:
    provider_server.script(reply_json(answer(finding(5, "major", suggestion="Remove x."))))
    ctx = await make_context()
    review = await ReviewerGPT().execute({"code": PYTHON, "filename": "geo.py"}, ctx)
    assert review == Review(
        summary="Fine.",
        score=80,
        findings=[
            {"severity": "major", "line": 5, "category": "bug", "message": "Problem."}
            | {"suggestion": "Remove x."}
        ],
        degraded=False,
        model=OPENAI,
    )
    body = provider_server.requests()[0].body
    assert body["response_format"]["json_schema"]["name"] == "ReviewDraft"
    assert "JSON" in body["messages"][0]["content"]
    prompt = user_prompt(provider_server)
    assert "Language: python" in prompt and "File: geo.py" in prompt
    assert "5 |     x = 1" in prompt  # numbered as in the file


async def test_an_answer_that_is_not_json_is_repaired(
    make_context: MakeContext, provider_server: FakeProviderServer
) -> None:
    provider_server.script(reply("Here is my review: all good!"), reply_json(answer(score=95)))
    review = await ReviewerGPT().execute(ReviewInput(code=PYTHON), await make_context())
    assert (review.score, review.model, review.degraded) == (95, OPENAI, False)
    assert provider_server.request_count == 2


async def test_unusable_answers_degrade_but_a_rejected_request_fails(
    make_context: MakeContext, provider_server: FakeProviderServer
) -> None:
    ctx = await make_context()
    provider_server.script(reply("no JSON here"), reply("still none"))
    review = await ReviewerGPT().execute({"code": PYTHON}, ctx)
    assert review.degraded and "invalid_output" in review.summary

    provider_server.script(bad_request("messages: malformed"))
    with pytest.raises(PermanentError) as caught:
        await ReviewerGPT().execute({"code": PYTHON}, ctx)
    assert caught.value.category is ErrorCategory.INVALID_REQUEST


async def test_lines_out_of_range_are_dropped_and_duplicates_merged(
    make_context: MakeContext, provider_server: FakeProviderServer
) -> None:
    findings = [
        finding(0),
        finding(99, "critical"),
        finding(4, "minor", message="Unused variable x", suggestion="Delete it."),
        finding(4, "high", message="unused variable `x`."),
        finding(4, "info", category="style", message="Unused variable x"),
        finding(None, "info", category="documentation", message="No docstrings."),
        finding(2, "major", message="Another."),
    ]
    provider_server.script(reply_json(answer(*findings, score=140)))
    review = await ReviewerGPT().execute({"code": PYTHON}, await make_context())
    assert review.score == 100
    assert [(f.line, f.severity, f.category) for f in review.findings] == [
        (None, "info", "documentation"),
        (2, "major", "bug"),
        (4, "major", "bug"),
        (4, "info", "style"),
    ]
    assert review.findings[2].suggestion == "Delete it."  # kept from the merged twin


async def test_a_long_file_is_reviewed_in_chunks_with_real_line_numbers(
    make_context: MakeContext, provider_server: FakeProviderServer
) -> None:
    class SmallChunks(ReviewerGPT):
        chunk_tokens = 60
        chunk_concurrency = 1

    functions = [f"def f{i}(x):\n    y = x + {i}\n    return y * 2\n\n" for i in range(12)]
    code = "".join(functions)
    chunks = split_code(code, SmallChunks.chunk_tokens, language="python")
    assert len(chunks) >= 3
    for index, chunk in enumerate(chunks):
        inside = finding(chunk.first + 1, message=f"Issue {index}.")
        outside = finding(chunk.last + 1, message="Not shown to the model.")
        provider_server.script(reply_json(answer(inside, outside, score=50 + 10 * index)))
    review = await SmallChunks().execute({"code": code, "language": "py"}, await make_context())
    assert provider_server.request_count == len(chunks)
    assert [f.line for f in review.findings] == [c.first + 1 for c in chunks]
    weights = [len(c.lines) for c in chunks]
    expected = sum((50 + 10 * i) * w for i, w in enumerate(weights)) / sum(weights)
    assert review.score == round(expected)
    assert review.summary.startswith(f"Reviewed in {len(chunks)} parts. Lines 1-")
    for index, chunk in enumerate(chunks):
        prompt = user_prompt(provider_server, index)
        assert f"Part {index + 1} of {len(chunks)}" in prompt
        assert f"{chunk.first} | def f" in prompt  # cut before a function, real numbers
        assert f"{chunk.last + 1} |" not in prompt


async def test_chunks_reviewed_concurrently_keep_only_the_lines_they_showed(
    make_context: MakeContext, provider_server: FakeProviderServer
) -> None:
    class Concurrent(ReviewerGPT):
        chunk_tokens = 60

    code = "".join(f"def f{i}(x):\n    y = x + {i}\n    return y * 2\n\n" for i in range(12))
    every_line = [finding(line, message=f"Line {line}.") for line in range(1, 49)]
    provider_server.set_default(reply_json(answer(*every_line)))
    ctx = await make_context()
    review = await Concurrent().execute({"code": code, "language": "python"}, ctx)
    assert [f.line for f in review.findings] == list(range(1, 49))  # each once, in order
    assert provider_server.request_count == len(split_code(code, 60, language="python"))

    provider_server.set_default(server_error(503))
    review = await Concurrent().execute({"code": code, "language": "python"}, ctx)
    assert review.degraded and review.findings == []


async def test_provider_down_gives_a_degraded_static_review(
    make_context: MakeContext, provider_server: FakeProviderServer
) -> None:
    provider_server.set_default(server_error(503))
    ctx = await make_context()
    broken = "import os\n\ndef f(:\n    pass\n"
    review = await ReviewerGPT().execute({"code": broken, "filename": "a.py"}, ctx)
    assert (review.degraded, review.model) == (True, "static-analysis")
    assert "no model could be reached" in review.summary
    assert (review.findings[0].line, review.findings[0].category) == (3, "syntax")
    assert provider_server.request_count == 2  # one try and one retry, then static checks

    review = await ReviewerGPT().execute({"code": PYTHON, "filename": "a.py"}, ctx)
    assert review.degraded
    assert [(f.line, f.severity, f.message) for f in review.findings] == [
        (1, "minor", "`os` imported but unused (ruff F401)"),
        (5, "minor", "Local variable `x` is assigned to but never used (ruff F841)"),
    ]
    assert review.score == 92

    review = await ReviewerGPT().execute({"code": "const x = 1;\n", "filename": "a.js"}, ctx)
    assert review.degraded and len(review.findings) == 1
    assert review.findings[0].severity == "info"
    assert "no static checks for javascript" in review.findings[0].message


async def test_open_breakers_give_a_degraded_review_without_a_request(
    make_context: MakeContext, provider_server: FakeProviderServer
) -> None:
    ctx = await make_context()
    await ctx.gateway.breakers.get(OPENAI).force_open()
    review = await ReviewerGPT().execute({"code": PYTHON}, ctx)
    assert (review.degraded, review.model) == (True, "static-analysis")
    assert "circuit_open" in review.summary
    assert [f.line for f in review.findings] == [1, 5]
    assert provider_server.request_count == 0


async def test_the_task_deadline_is_not_mistaken_for_an_outage(
    make_context: MakeContext, provider_server: FakeProviderServer
) -> None:
    provider_server.set_default(hang())
    ctx = await make_context()
    ctx.deadline = time.monotonic() + 0.3
    with pytest.raises(TransientError):
        await ReviewerGPT().execute({"code": PYTHON}, ctx)


async def test_history_rows_name_the_reviewer(
    make_context: MakeContext, provider_server: FakeProviderServer, sqlite_url: str
) -> None:
    provider_server.script(reply_json(answer()))
    ctx = await make_context()
    await ctx.call_agent("review", {"code": PYTHON})
    await ctx.gateway.flush_history()
    calls, attempts = await history(sqlite_url)
    assert [(c.agent, c.route, c.task_id, c.target, c.outcome) for c in calls] == [
        ("reviewer", "review", "t-1", OPENAI, "success")
    ]
    assert len(attempts) == 1


async def test_the_simulator_gives_a_labelled_schema_valid_review(
    make_context: MakeContext,
) -> None:
    code = 'def f():\n    password = "hunter2"\n    return password  # TODO: vault\n'
    ctx = await make_context(routes=["sim:reviewer"])
    review = await ReviewerGPT().execute({"code": code}, ctx)
    assert review.model == "sim:reviewer" and not review.degraded
    assert review.summary.startswith("[simulated]")
    assert Review.model_validate(review.model_dump()) == review
    flagged = {(f.line, f.category) for f in review.findings}
    assert {(2, "security"), (3, "maintainability")} <= flagged


NEW_FILE = "".join(f"line_{n} = {n}\n" for n in range(1, 21)).replace("line_10 = 10", "x = eval(s)")
DIFF = """\
--- a/mod.py
+++ b/mod.py
@@ -8,5 +8,5 @@
 line_8 = 8
 line_9 = 9
-line_10 = 10
+x = eval(s)
 line_11 = 11
 line_12 = 12
"""


async def test_a_diff_is_reviewed_around_its_changes(
    make_context: MakeContext, provider_server: FakeProviderServer
) -> None:
    findings = [finding(10, "critical"), finding(12), finding(15), finding(2)]
    provider_server.script(reply_json(answer(*findings)))
    review = await ReviewerGPT().execute({"code": NEW_FILE, "diff": DIFF}, await make_context())
    assert [(f.line, f.severity) for f in review.findings] == [(10, "critical"), (12, "minor")]
    prompt = user_prompt(provider_server)
    assert "File: mod.py" in prompt and "Language: python" in prompt
    assert "10 + | x = eval(s)" in prompt and " 9   | line_9 = 9" in prompt
    assert "line_3 = 3" not in prompt and "line_17" not in prompt


async def test_a_degraded_diff_review_keeps_static_findings_near_the_change(
    make_context: MakeContext, provider_server: FakeProviderServer
) -> None:
    provider_server.set_default(server_error(503))
    ctx = await make_context()
    code = "import os\n" + NEW_FILE  # the unused import on line 1 is far from the change
    diff = DIFF.replace("-8,5 +8,5", "-8,5 +9,5")
    review = await ReviewerGPT().execute({"code": code, "diff": diff}, ctx)
    assert review.degraded
    assert [f.line for f in review.findings] == [11]  # F821: undefined `s`, next to the change
    assert "only a diff" not in review.summary

    review = await ReviewerGPT().execute({"code": "not the new file", "diff": DIFF}, ctx)
    assert [f.category for f in review.findings] == ["coverage"]


def test_input_validation() -> None:
    with pytest.raises(ValidationError, match="blank"):
        ReviewInput(code="   \n")
    two_files = DIFF + DIFF.replace("mod.py", "other.py")
    with pytest.raises(ValidationError, match=r"several files \(mod.py, other.py\)"):
        ReviewInput(code=NEW_FILE, diff=two_files)
    assert ReviewInput(code=NEW_FILE, diff=two_files, filename="pkg/other.py").diff_file()
    with pytest.raises(ValidationError, match="no hunk"):
        ReviewInput(code=NEW_FILE, diff="just text")
    examples = ReviewInput.model_json_schema()["examples"]
    assert ReviewInput.model_validate(examples[0]).language == "python"


@pytest.mark.parametrize(
    ("code", "filename", "declared", "expected"),
    [
        ("x = 1", "a.py", None, "python"),
        ("x = 1", None, "Py", "python"),
        ("echo hi", "build.sh", None, "shell"),
        ("#!/usr/bin/env python3\nprint(1)\n", None, None, "python"),
        ("#!/usr/bin/env node\n", None, None, "javascript"),
        ("import os\n\ndef f():\n    pass\n", None, None, "python"),
        ("package main\n\nfunc main() {}\n", None, None, "go"),
        ("const f = (a) => a + 1;\n", None, None, "javascript"),
        ("#include <stdio.h>\nint main(void) {}\n", None, None, "c"),
        ("hello world", None, None, "text"),
    ],
)
def test_language_detection(
    code: str, filename: str | None, declared: str | None, expected: str
) -> None:
    assert detect_language(code, filename, declared) == expected
