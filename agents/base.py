"""``BaseAgent``: what an agent developer subclasses.

An agent declares a ``name``, the ``task_type`` clients submit, pydantic ``Input`` and
``Output`` models, and a default ``route``; it implements ``run``. It reaches LLMs only through
``self.ask`` / ``self.ask_json``, which go through the gateway with the agent's name and task
id attached, so every call and attempt in the history names the agent that made it::

    class Summarizer(BaseAgent[SummarizeInput, Summary]):
        name = "summarizer"
        task_type = "summarize"
        Input = SummarizeInput
        Output = Summary
        route = "default"

        async def run(self, input: SummarizeInput, ctx: AgentContext) -> Summary:
            return await self.ask_json([{"role": "user", "content": input.text}], schema=Summary)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from agents.context import AgentContext
from backend.llm.messages import MessageLike
from backend.llm.result import LLMResult

InputT = TypeVar("InputT", bound=BaseModel)
OutputT = TypeVar("OutputT", bound=BaseModel)
SchemaT = TypeVar("SchemaT", bound=BaseModel)


class BaseAgent(Generic[InputT, OutputT]):
    """Subclass contract: set the class attributes below and implement :meth:`run`."""

    name: ClassVar[str]
    """Recorded as the ``agent`` of every LLM call the agent makes."""
    task_type: ClassVar[str]
    """The ``type`` clients submit to run this agent (``POST /v1/tasks``)."""
    Input: ClassVar[type[BaseModel]]
    Output: ClassVar[type[BaseModel]]
    route: ClassVar[str] = "default"
    """The gateway route the agent's LLM calls take unless ``ask`` names another."""
    description: ClassVar[str] = ""

    _ctx: AgentContext | None = None

    async def run(self, input: InputT, ctx: AgentContext) -> OutputT:
        raise NotImplementedError

    @property
    def ctx(self) -> AgentContext:
        if self._ctx is None:
            raise RuntimeError("the agent is not running: call execute(), not run()")
        return self._ctx

    async def execute(self, input: BaseModel | Mapping[str, Any], ctx: AgentContext) -> OutputT:
        """Validate ``input``, run the agent with a context of its own, validate the output."""
        parsed: Any = (
            input
            if isinstance(input, self.Input)
            else self.Input.model_validate(
                input.model_dump() if isinstance(input, BaseModel) else input
            )
        )
        self._ctx = ctx.for_agent(self.name)
        self._ctx.check()
        output = await self.run(parsed, self._ctx)
        if not isinstance(output, self.Output):
            raise TypeError(
                f"agent {self.name!r} returned {type(output).__name__}, "
                f"not its Output model {self.Output.__name__}"
            )
        return output

    async def ask(
        self,
        messages: Iterable[MessageLike],
        *,
        route: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> LLMResult:
        """One LLM call through the gateway, bounded by the task's deadline."""
        return await self._complete(messages, None, route, max_tokens, temperature)

    async def ask_structured(
        self,
        messages: Iterable[MessageLike],
        *,
        schema: type[BaseModel],
        route: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> LLMResult:
        """An LLM call whose answer must validate against ``schema`` (one repair attempt,
        then ``invalid_output``); the whole result, with ``.parsed`` and ``.target``."""
        return await self._complete(messages, schema, route, max_tokens, temperature)

    async def _complete(
        self,
        messages: Iterable[MessageLike],
        schema: type[BaseModel] | None,
        route: str | None,
        max_tokens: int | None,
        temperature: float | None,
    ) -> LLMResult:
        ctx = self.ctx
        ctx.check()
        return await ctx.gateway.complete(
            messages,
            route=route or self.route,
            agent=self.name,
            task_id=ctx.task_id,
            schema=schema,
            max_tokens=max_tokens,
            temperature=temperature,
            deadline=ctx.deadline,
            replay=ctx.replay,
        )

    async def ask_json(
        self,
        messages: Iterable[MessageLike],
        *,
        schema: type[SchemaT],
        route: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> SchemaT:
        """Like :meth:`ask_structured`, returning only the validated object."""
        result = await self.ask_structured(
            messages, schema=schema, route=route, max_tokens=max_tokens, temperature=temperature
        )
        parsed: SchemaT = result.parsed
        return parsed


__all__ = ["AgentContext", "BaseAgent"]
