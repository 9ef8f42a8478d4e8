"""The simulator provider: deterministic, schema-valid, labelled answers; latency through the
injected clock; and every fault of the ``BULWARK_SIM_FAULTS`` grammar, parsed and applied."""

from __future__ import annotations

import ast
import asyncio
import enum
import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from backend.config import Settings
from backend.core.errors import TRANSIENT_CATEGORIES, ErrorCategory, ProviderError, classify
from backend.llm.providers import sim
from backend.llm.providers.base import Provider
from backend.llm.providers.sim import SimProvider
from backend.llm.providers.sim_faults import (
    STATUS_CATEGORIES,
    FaultPlan,
    FaultRule,
    SimulatedFaultError,
)
from backend.llm.types import ChatMessage, OutputSchema, ProviderRequest
from backend.testing import FakeClock

C = ErrorCategory


class Finding(BaseModel):
    severity: Literal["info", "minor", "major", "critical"]
    line: int | None
    category: str
    message: str
    suggestion: str | None


class Review(BaseModel):
    summary: str
    score: int = Field(ge=0, le=100)
    findings: list[Finding]
    degraded: bool
    model: str


class Code(BaseModel):
    language: str
    code: str
    explanation: str
    checks: dict[str, Any]
    review: Review | None
    model: str


SAMPLE = """import os


def load(path):
    try:
        data = open(path).read()
    except:
        print("failed")  # TODO: handle this properly
    return data + "{long}"


class _Private:
    def method(self):
        \"\"\"Documented.\"\"\"
        return os.sep
""".replace("{long}", "x" * 100)

CLEAN = '''def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b
'''


def request(
    text: str = "hello", *, model: str = "general", schema: type[BaseModel] | None = None, **kw: Any
) -> ProviderRequest:
    messages = [ChatMessage("system", "You are helpful."), ChatMessage("user", text)]
    output = OutputSchema.of(schema) if schema is not None else None
    return ProviderRequest(model=model, messages=messages, schema=output, **kw)


def review_request(code: str) -> ProviderRequest:
    return request(f"Review this file:\n```python\n{code}```\n", model="reviewer", schema=Review)


# -- answers -----------------------------------------------------------------------------------


async def test_is_a_provider_named_sim() -> None:
    provider: Provider = SimProvider()
    assert provider.name == "sim"
    await provider.aclose()


async def test_same_request_same_answer_across_instances() -> None:
    first = await SimProvider().complete(request("What is a circuit breaker?"))
    second = await SimProvider().complete(request("What is a circuit breaker?"))
    assert first == second


async def test_answers_depend_on_messages_model_and_seed() -> None:
    base = (await SimProvider().complete(request("a"))).text
    assert (await SimProvider().complete(request("b"))).text != base
    assert (await SimProvider().complete(request("a", model="other"))).text != base
    assert (await SimProvider(seed=7).complete(request("a"))).text != base


async def test_plain_answer_is_labelled_simulated() -> None:
    response = await SimProvider().complete(request("Explain retries", model="general"))
    assert response.simulated is True
    assert response.text.startswith("[simulated]")
    assert "sim:general" in response.text
    assert "Explain retries" in response.text
    assert response.finish_reason == "stop"
    assert response.request_id is not None and response.request_id.startswith("sim-")


async def test_usage_is_words_over_three_quarters() -> None:
    response = await SimProvider().complete(request("one two three"))
    assert response.usage.input_tokens == 8  # "You are helpful." + 3 words = 6 words / 0.75
    assert response.usage.output_tokens == -(-len(response.text.split()) * 4 // 3)


async def test_max_tokens_cuts_a_plain_answer() -> None:
    response = await SimProvider().complete(request("hello", max_tokens=4))
    assert response.text == "[simulated] Offline answer"
    assert response.finish_reason == "length"


async def test_stream_yields_the_same_text_in_chunks() -> None:
    provider = SimProvider()
    chunks = [chunk async for chunk in provider.stream(request("stream me"))]
    assert 1 < len(chunks) <= sim.STREAM_CHUNKS
    assert "".join(chunks) == (await provider.complete(request("stream me"))).text


async def test_review_is_valid_plausible_and_points_at_real_lines() -> None:
    response = await SimProvider().complete(review_request(SAMPLE))
    review = Review.model_validate_json(response.text)
    lines = SAMPLE.splitlines()
    found = {(f.line, f.category) for f in review.findings}
    assert {
        (4, "documentation"),  # def load: no docstring (the private class is not reported)
        (7, "error-handling"),  # bare except
        (8, "logging"),  # print(
        (8, "maintainability"),  # TODO
        (9, "style"),  # a 110-character line
    } == found
    for finding in review.findings:
        assert finding.line is not None and 1 <= finding.line <= len(lines)
    bare_except = next(f for f in review.findings if f.category == "error-handling")
    assert lines[bare_except.line - 1].strip() == "except:"  # type: ignore[operator]
    assert bare_except.severity == "major"
    assert review.summary.startswith("[simulated]")
    assert review.model == "sim:reviewer"
    assert review.degraded is False
    assert review.score == 100 - (4 + 12 + 4 + 1 + 4)


async def test_clean_code_scores_full_marks() -> None:
    review = Review.model_validate_json((await SimProvider().complete(review_request(CLEAN))).text)
    assert review.findings == []
    assert review.score == 100


async def test_review_of_unfenced_code_and_of_broken_python() -> None:
    text = "def f(:\n    pass\n"
    response = await SimProvider().complete(request(text, model="reviewer", schema=Review))
    review = Review.model_validate_json(response.text)
    assert [(f.line, f.category, f.severity) for f in review.findings] == [
        (1, "correctness", "major")
    ]


async def test_code_answer_is_valid_python_and_labelled() -> None:
    response = await SimProvider().complete(
        request("Write a function that reverses a string", model="coder", schema=Code)
    )
    code = Code.model_validate_json(response.text)
    tree = ast.parse(code.code)
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    assert function.name == "reverses_string"
    assert ast.get_docstring(function) is not None
    assert code.language == "python"
    assert code.explanation.startswith("[simulated]")
    assert code.model == "sim:coder"
    assert code.review is None


async def test_code_answer_survives_hostile_instructions() -> None:
    instructions = 'Write a """ \\ */ class that\nprints "hi"'
    response = await SimProvider().complete(request(instructions, model="coder", schema=Code))
    ast.parse(Code.model_validate_json(response.text).code)


async def test_code_answer_in_javascript_when_asked() -> None:
    response = await SimProvider().complete(
        request("Write a JavaScript function that sums an array", model="coder", schema=Code)
    )
    code = Code.model_validate_json(response.text)
    assert code.language == "javascript"
    assert "function sumsArray(" in code.code


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Leaf(BaseModel):
    kind: Literal["leaf"]
    weight: Annotated[float, Field(gt=0, lt=1)]


class Node(BaseModel):
    name: Annotated[str, Field(min_length=40, max_length=50)]
    code: Annotated[str, Field(max_length=3)]
    count: Annotated[int, Field(gt=10, le=12)]
    ratio: Annotated[float, Field(ge=2.5, le=2.5)]
    colour: Colour
    tags: Annotated[list[str], Field(min_length=3, max_length=4)]
    pair: tuple[int, str]
    scores: dict[str, int]
    leaf: Leaf | None
    leaves: list[Leaf]
    children: list[Node] = []
    parent: Node | None = None
    created: datetime
    ident: uuid.UUID
    flag: bool
    model: str


async def test_generic_nested_schema_validates() -> None:
    for seed in range(5):
        provider = SimProvider(seed=seed)
        response = await provider.complete(request("anything", model="m", schema=Node))
        node = Node.model_validate_json(response.text)
        assert node.model == "sim:m"
        assert node.leaves  # arrays get an item
        data = json.loads(response.text)
        assert "[simulated]" not in json.dumps(data)  # no free-text field to label here


async def test_hand_written_schema_with_refs_const_and_unions() -> None:
    schema = {
        "type": "object",
        "required": ["version", "item", "choice", "maybe", "summary"],
        "properties": {
            "version": {"const": 2},
            "item": {"allOf": [{"$ref": "#/$defs/Item"}]},
            "choice": {"oneOf": [{"type": "integer", "exclusiveMinimum": 5}, {"type": "null"}]},
            "maybe": {"type": ["string", "null"], "enum": ["x", None]},
            "summary": {"type": "string"},
        },
        "$defs": {
            "Item": {
                "type": "object",
                "properties": {"n": {"type": "number", "minimum": -1, "maximum": 1}},
                "required": ["n"],
            }
        },
    }
    req = ProviderRequest("m", [ChatMessage("user", "q")], schema=OutputSchema("Thing", schema))
    data = json.loads((await SimProvider().complete(req)).text)
    assert data["version"] == 2
    assert -1 <= data["item"]["n"] <= 1
    assert isinstance(data["choice"], int) and data["choice"] > 5
    assert data["maybe"] in ("x", None)
    assert data["summary"].startswith("[simulated]")


# -- latency -----------------------------------------------------------------------------------


async def test_latency_is_slept_through_the_injected_clock() -> None:
    clock = FakeClock()
    provider = SimProvider(latency_ms=250, clock=clock)
    await provider.complete(request())
    _ = [chunk async for chunk in provider.stream(request())]
    assert clock.sleeps == [0.25, 0.25]


async def test_an_injected_sleep_wins_over_the_clock() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    clock = FakeClock()
    await SimProvider(latency_ms=40, clock=clock, sleep=sleep).complete(request())
    assert slept == [0.04]
    assert clock.sleeps == []


def test_negative_latency_is_rejected() -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        SimProvider(latency_ms=-1)


def test_from_settings_reads_latency_and_faults() -> None:
    settings = Settings(sim_latency_ms=12.5, sim_faults="status=429,retry_after=2")
    provider = sim.from_settings(settings)
    assert provider.name == "sim"
    assert provider.latency_ms == 12.5
    assert provider.faults == FaultPlan((FaultRule(C.RATE_LIMIT, 429, retry_after=2.0),))
    assert sim.from_settings(Settings()).faults == FaultPlan()


# -- faults: grammar ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("rate=0.3,status=503", FaultRule(C.SERVER_ERROR, 503, rate=0.3)),
        ("status=429,retry_after=2", FaultRule(C.RATE_LIMIT, 429, retry_after=2.0)),
        ("hang=1", FaultRule(C.TIMEOUT, None, hang=True)),
        ("first=3,status=500", FaultRule(C.SERVER_ERROR, 500, first=3)),
        ("model=reviewer", FaultRule(C.SERVER_ERROR, 503, model="reviewer")),
        (" status = 529 , model = sim:coder ", FaultRule(C.OVERLOADED, 529, model="sim:coder")),
        ("error=quota_exceeded", FaultRule(C.QUOTA_EXCEEDED, 429)),
        ("error=connection_error", FaultRule(C.CONNECTION_ERROR, None)),
        ("status=400,error=context_length", FaultRule(C.CONTEXT_LENGTH, 400)),
        ("hang=0,status=401", FaultRule(C.AUTH_ERROR, 401)),
        ("status=404,", FaultRule(C.MODEL_NOT_FOUND, 404)),
    ],
)
def test_each_rule_syntax_parses(text: str, rule: FaultRule) -> None:
    assert FaultPlan.parse(text) == FaultPlan((rule,))


def test_rules_are_separated_by_semicolons() -> None:
    plan = FaultPlan.parse("model=reviewer,hang=1; rate=0.1,status=529;")
    assert plan.rules == (
        FaultRule(C.TIMEOUT, None, hang=True, model="reviewer"),
        FaultRule(C.OVERLOADED, 529, rate=0.1),
    )
    assert not FaultPlan.parse("  ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rate=2", "rule 1 ('rate=2'): rate must be a number between 0 and 1, got 2"),
        ("rate=lots", "rate must be a number, got 'lots'"),
        ("status=418", "status must be one of 400, 401"),
        ("status=abc", "got 'abc'"),
        ("first=0", "first must be a whole number of at least 1"),
        ("first=1.5", "first must be a whole number, got '1.5'"),
        ("retry_after=-1", "retry_after must be 0 or more seconds"),
        ("retry_after=nan", "retry_after must be finite"),
        ("hang=maybe", "hang must be 1 or 0, got 'maybe'"),
        ("hang=1,status=503", "hang=1 cannot be combined with status"),
        ("status=503;colour=red", "rule 2 ('colour=red'): unknown key 'colour'"),
        ("status", "'status' is not of the form key=value"),
        ("model=", "'model=' is not of the form key=value"),
        ("status=503,status=500", "key 'status' given twice"),
        ("error=bogus", "error must be one of rate_limit"),
        ("error=unknown", "error must be one of"),
        ("status=500,error=rate_limit", "error=rate_limit does not go with status=500"),
    ],
)
def test_bad_fault_strings_are_rejected_naming_the_bad_part(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="BULWARK_SIM_FAULTS") as caught:
        FaultPlan.parse(text)
    assert message in str(caught.value)


def test_bad_fault_settings_fail_at_start_up() -> None:
    with pytest.raises(ValueError, match="unknown key 'rat'"):
        sim.from_settings(Settings(sim_faults="rat=0.5"))


# -- faults: applied ---------------------------------------------------------------------------


async def outcomes(provider: SimProvider, n: int, model: str = "general") -> list[bool]:
    """True for each of ``n`` requests that succeeded."""
    results = []
    for _ in range(n):
        try:
            await provider.complete(request(model=model))
        except ProviderError:
            results.append(False)
        else:
            results.append(True)
    return results


async def test_rate_is_deterministic_given_the_seed() -> None:
    plan = FaultPlan.parse("rate=0.3,status=503")
    first = await outcomes(SimProvider(faults=plan, seed=1), 200)
    again = await outcomes(SimProvider(faults=plan, seed=1), 200)
    other = await outcomes(SimProvider(faults=plan, seed=2), 200)
    assert first == again
    assert first != other
    assert 40 <= first.count(False) <= 80  # about 30 %


async def test_first_n_requests_fail_then_healthy() -> None:
    provider = SimProvider(faults=FaultPlan.parse("first=3,status=500"))
    assert await outcomes(provider, 6) == [False, False, False, True, True, True]
    assert provider.requests == 6


@pytest.mark.parametrize("status", sorted(STATUS_CATEGORIES))
async def test_status_gets_the_category_a_real_provider_error_gets(status: int) -> None:
    provider = SimProvider(faults=FaultPlan.parse(f"status={status}"))
    with pytest.raises(ProviderError) as caught:
        await provider.complete(request(model="reviewer"))
    c = caught.value.classification
    assert c.category == STATUS_CATEGORIES[status]
    assert c.transient == (c.category in TRANSIENT_CATEGORIES)
    assert c.status_code == status
    assert caught.value.category == c.category
    assert "simulated" in c.message and "sim:reviewer" in c.message
    cause = caught.value.__cause__
    assert isinstance(cause, SimulatedFaultError) and cause.status_code == status
    assert classify(cause).category == c.category  # the real classifier agrees


@pytest.mark.parametrize(
    ("text", "category", "transient", "status"),
    [
        ("status=429,retry_after=2", C.RATE_LIMIT, True, 429),
        ("status=503", C.SERVER_ERROR, True, 503),
        ("status=500", C.SERVER_ERROR, True, 500),
        ("status=529", C.OVERLOADED, True, 529),
        ("status=401", C.AUTH_ERROR, False, 401),
        ("status=404", C.MODEL_NOT_FOUND, False, 404),
        ("status=400", C.INVALID_REQUEST, False, 400),
        ("error=quota_exceeded", C.QUOTA_EXCEEDED, False, 429),
        ("status=400,error=context_length", C.CONTEXT_LENGTH, False, 400),
        ("error=content_filter", C.CONTENT_FILTER, False, 400),
        ("error=connection_error", C.CONNECTION_ERROR, True, None),
        ("error=timeout", C.TIMEOUT, True, None),
    ],
)
async def test_fault_classification_matches_classify_of_the_cause(
    text: str, category: ErrorCategory, transient: bool, status: int | None
) -> None:
    with pytest.raises(ProviderError) as caught:
        await SimProvider(faults=FaultPlan.parse(text)).complete(request())
    c = caught.value.classification
    assert (c.category, c.transient, c.status_code) == (category, transient, status)
    real = classify(caught.value.__cause__)  # type: ignore[arg-type]
    assert (real.category, real.transient, real.status_code) == (category, transient, status)
    assert real.retry_after_seconds == c.retry_after_seconds


async def test_retry_after_is_carried_as_the_provider_hint() -> None:
    with pytest.raises(ProviderError) as caught:
        await SimProvider(faults=FaultPlan.parse("status=429,retry_after=2")).complete(request())
    assert caught.value.classification.retry_after_seconds == 2.0
    cause = caught.value.__cause__
    assert isinstance(cause, SimulatedFaultError) and cause.headers == {"retry-after": "2.0"}
    assert classify(caught.value).retry_after_seconds == 2.0


async def test_hang_lasts_until_the_caller_times_out() -> None:
    provider = SimProvider(faults=FaultPlan.parse("hang=1"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(provider.complete(request()), timeout=0.05)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(provider.stream(request())), timeout=0.05)


async def test_hang_with_a_request_timeout_fails_as_a_timeout_after_it() -> None:
    clock = FakeClock()
    provider = SimProvider(faults=FaultPlan.parse("hang=1"), clock=clock)
    with pytest.raises(ProviderError) as caught:
        await provider.complete(request(timeout=7.5))
    assert caught.value.category == C.TIMEOUT
    assert caught.value.classification.transient is True
    assert clock.sleeps == [7.5]


async def test_model_restricts_a_rule() -> None:
    provider = SimProvider(faults=FaultPlan.parse("model=reviewer,status=503"))
    assert await outcomes(provider, 2, model="reviewer") == [False, False]
    assert await outcomes(provider, 2, model="coder") == [True, True]
    by_target = SimProvider(faults=FaultPlan.parse("model=sim:coder"))
    assert await outcomes(by_target, 1, model="coder") == [False]
    assert await outcomes(by_target, 1, model="reviewer") == [True]


async def test_several_rules_first_written_wins() -> None:
    provider = SimProvider(faults=FaultPlan.parse("first=1,status=429; model=coder,status=500"))
    categories: list[ErrorCategory | None] = []
    for model in ("coder", "coder", "general"):
        try:
            await provider.complete(request(model=model))
            categories.append(None)
        except ProviderError as exc:
            categories.append(exc.category)
    assert categories == [C.RATE_LIMIT, C.SERVER_ERROR, None]


async def test_stream_fails_before_the_first_chunk() -> None:
    provider = SimProvider(faults=FaultPlan.parse("status=503"))
    chunks: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in provider.stream(request()):
            chunks.append(chunk)
    assert chunks == []
    assert caught.value.category == C.SERVER_ERROR


async def test_latency_is_applied_before_a_fault() -> None:
    clock = FakeClock()
    provider = SimProvider(latency_ms=100, faults=FaultPlan.parse("status=500"), clock=clock)
    with pytest.raises(ProviderError):
        await provider.complete(request())
    assert clock.sleeps == [0.1]
