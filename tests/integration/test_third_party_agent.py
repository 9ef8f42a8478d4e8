"""A third-party agent, written as docs/agents.md teaches, registered with the decorator and
run through the Python API against the fake provider server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel, Field

from agents import AgentCancelledError, AgentContext, AgentRegistry, BaseAgent
from agents.results import Review
from backend.core.errors import ErrorCategory, PermanentError, TransientError
from backend.llm.gateway import LLMGateway
from tests.fakes.behaviours import reply_json
from tests.fakes.provider_server import FakeProviderServer
from tests.integration.gateway_helpers import OPENAI, gateway_settings, history

# --- the example agent of docs/agents.md (keep the two in step) ---------------------------


class ExplainInput(BaseModel):
    code: str = Field(min_length=1, description="The code to explain.")
    language: str = Field(default="python", description="Its programming language.")
    review: bool = Field(default=False, description="Also have ReviewerGPT review it.")


class Explanation(BaseModel):
    summary: str = Field(description="What the code does, in one or two sentences.")
    steps: list[str] = Field(default_factory=list, description="How it does it.")


class ExplainResult(BaseModel):
    explanation: Explanation
    model: str
    review: Review | None = None


class Explainer(BaseAgent[ExplainInput, ExplainResult]):
    """Explains code in plain words; optionally asks ReviewerGPT for a review too."""

    name = "explainer"
    task_type = "explain"
    Input = ExplainInput
    Output = ExplainResult
    route = "default"
    description = "Explains what a piece of code does."

    async def run(self, input: ExplainInput, ctx: AgentContext) -> ExplainResult:
        ctx.logger.info("explaining %d characters of %s", len(input.code), input.language)
        answer = await self.ask_structured(
            [
                {"role": "system", "content": "You explain code to a new team member."},
                {"role": "user", "content": f"```{input.language}\n{input.code}\n```"},
            ],
            schema=Explanation,
        )
        review = None
        if input.review:
            reviewed = await ctx.call_agent(
                "review", {"code": input.code, "language": input.language}
            )
            review = Review.model_validate(reviewed)
        return ExplainResult(explanation=answer.parsed, model=answer.target, review=review)


# --- end of the example ----------------------------------------------------------------------

registry = AgentRegistry.builtins()
registry.register(Explainer)


@registry.register
class Looper(BaseAgent[ExplainInput, ExplainResult]):
    """Calls its own task type: refused, agents may not recurse."""

    name = "looper"
    task_type = "loop"
    Input = ExplainInput
    Output = ExplainResult

    async def run(self, input: ExplainInput, ctx: AgentContext) -> ExplainResult:
        result = await ctx.call_agent("loop", input)
        return ExplainResult.model_validate(result)


CODE = "def double(x):\n    return x * 2\n"
EXPLANATION = {"summary": "Doubles a number.", "steps": ["Multiplies x by 2."]}
REVIEW = {"summary": "Fine.", "score": 90, "findings": []}


@pytest.fixture
async def gateway(
    provider_server: FakeProviderServer, sqlite_url: str
) -> AsyncIterator[LLMGateway]:
    routes = {"default": [OPENAI], "review": [OPENAI]}
    gateway = await LLMGateway.create(
        gateway_settings(provider_server, sqlite_url, routes), migrate=True
    )
    yield gateway
    await gateway.aclose()


def context(gateway: LLMGateway, deadline: float | None = None) -> AgentContext:
    return AgentContext(gateway=gateway, registry=registry, task_id="t-3p", deadline=deadline)


async def test_the_agent_runs_through_the_python_api(
    gateway: LLMGateway, provider_server: FakeProviderServer, sqlite_url: str
) -> None:
    provider_server.script(reply_json(EXPLANATION))
    agent_class = registry.get("explain")
    result = await agent_class().execute({"code": CODE}, context(gateway))

    assert isinstance(result, ExplainResult)
    assert result.explanation == Explanation.model_validate(EXPLANATION)
    assert (result.model, result.review) == (OPENAI, None)
    assert "explain" in registry.types()
    await gateway.flush_history()
    calls, _ = await history(sqlite_url)
    assert [(c.agent, c.route, c.task_id) for c in calls] == [("explainer", "default", "t-3p")]


async def test_the_agent_can_call_the_reviewer(
    gateway: LLMGateway, provider_server: FakeProviderServer, sqlite_url: str
) -> None:
    provider_server.script(reply_json(EXPLANATION), reply_json(REVIEW))
    result = await Explainer().execute({"code": CODE, "review": True}, context(gateway))

    assert result.review is not None
    assert (result.review.summary, result.review.model) == ("Fine.", OPENAI)
    await gateway.flush_history()
    calls, _ = await history(sqlite_url)
    assert [c.agent for c in calls] == ["explainer", "reviewer"]


async def test_invalid_input_is_refused_before_any_call(
    gateway: LLMGateway, provider_server: FakeProviderServer
) -> None:
    with pytest.raises(ValueError, match="code"):
        await Explainer().execute({"code": ""}, context(gateway))
    assert provider_server.request_count == 0


async def test_recursive_agent_calls_are_refused(
    gateway: LLMGateway, provider_server: FakeProviderServer
) -> None:
    with pytest.raises(PermanentError, match="recursive agent calls are refused") as caught:
        await Looper().execute({"code": CODE}, context(gateway))
    assert caught.value.category is ErrorCategory.INVALID_REQUEST
    assert provider_server.request_count == 0


async def test_a_cancelled_task_does_not_start(
    gateway: LLMGateway, provider_server: FakeProviderServer
) -> None:
    ctx = context(gateway)
    ctx.cancelled.set()
    with pytest.raises(AgentCancelledError):
        await Explainer().execute({"code": CODE}, ctx)
    assert provider_server.request_count == 0


async def test_cancellation_stops_the_agent_between_steps(
    gateway: LLMGateway, provider_server: FakeProviderServer
) -> None:
    provider_server.script(reply_json(EXPLANATION).with_latency(1000), reply_json(REVIEW))
    ctx = context(gateway)

    async def cancel_once_asked() -> None:
        await asyncio.to_thread(provider_server.wait_for_requests, 1)
        ctx.cancelled.set()

    canceller = asyncio.create_task(cancel_once_asked())
    with pytest.raises(AgentCancelledError) as caught:
        await Explainer().execute({"code": CODE, "review": True}, ctx)
    await canceller
    assert caught.value.category is ErrorCategory.CANCELLED
    assert provider_server.request_count == 1  # the reviewer was never asked


async def test_a_passed_deadline_raises_before_any_call(
    gateway: LLMGateway, provider_server: FakeProviderServer
) -> None:
    ctx = context(gateway, deadline=time.monotonic() - 1)
    with pytest.raises(TransientError, match="deadline") as caught:
        await Explainer().execute({"code": CODE}, ctx)
    assert caught.value.category is ErrorCategory.TIMEOUT
    assert provider_server.request_count == 0
