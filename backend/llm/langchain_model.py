"""``ResilientChatModel``: a langchain-core chat model whose every call goes through an
:class:`~backend.llm.gateway.LLMGateway`, so LCEL chains and LangChain code get Bulwark's
retries, circuit breakers, fallback routes and call history.

Choices a user may want to know about:

* **Per-call options.** ``route``, ``agent``, ``task_id``, ``max_tokens``, ``temperature`` and
  ``timeout_seconds`` are fields, and may also be given per call
  (``model.ainvoke(x, route="code")``, ``model.bind(task_id=...)``). Any other keyword (``tools``,
  ...) is a ``TypeError``: dropping it silently would change what the caller asked for.
  ``timeout_seconds`` becomes the gateway's ``deadline``: it bounds the whole call, retries,
  waits and fallbacks included.
* **Async first.** The gateway's database engine, HTTP clients and history writer belong to
  the event loop that created it. ``ainvoke``/``abatch``/``astream`` run on that loop. The
  blocking ``invoke``/``batch``/``stream`` need ``loop=`` (the gateway's loop, running in
  another thread): they hand the call to it with ``asyncio.run_coroutine_threadsafe`` and
  wait. Without ``loop``, or when called on that very loop (waiting there would deadlock it),
  they raise ``RuntimeError`` saying what to do. With ``loop`` set, async calls made from
  another loop are handed over to it the same way.
* **Errors** are Bulwark's own (``TransientError``, ``PermanentError``, the route errors),
  already classified, unchanged: ``error.category`` says what went wrong. An unknown route is
  the gateway's ``KeyError``; a message the gateway cannot carry (a tool message) its
  ``ValueError``.
* **Metadata.** The answer's ``response_metadata`` has ``target`` (the ``provider:model`` that
  answered, after any fallback), ``call_id`` (the row in ``llm_calls``), ``attempts``,
  ``simulated`` and ``model_name`` (= ``target``); ``usage_metadata`` carries the tokens.
  Streamed chunks carry text only: ``LLMGateway.stream`` yields text.
* **Streaming** retries and falls back only until the first chunk; after that a failure ends
  the stream with a classified error (see :mod:`backend.llm.streaming`).
* **Stop sequences** are not sent to providers (the gateway has no such knob): the answer is
  cut at the first one. A stream stops yielding there, but reads the rest of the answer, so
  the call completes and is recorded as a success.
* **Structured output**: :meth:`ResilientChatModel.with_structured_output` takes a pydantic
  model class and calls ``gateway.complete(schema=...)`` (the provider's native JSON mode, the
  gateway's validation and its one repair request). ``gateway.complete(..., schema=...)``
  directly gives the same, with ``result.parsed``.
* A LangChain cache (``cache=`` or ``set_llm_cache``) answers before the gateway is called:
  such answers make no history row.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel, Field

from backend.llm.gateway import LLMGateway
from backend.llm.result import LLMResult

T = TypeVar("T")

#: Keyword arguments a call may override (the fields of the same name are the defaults).
CALL_OPTIONS = frozenset(
    {"route", "agent", "task_id", "max_tokens", "temperature", "timeout_seconds"}
)

_NO_LOOP = (
    "ResilientChatModel.{method}() blocks, and the gateway lives on an event loop. Await "
    "the async API (ainvoke, abatch, astream) on the loop that created the gateway, or pass "
    "loop=<that loop> (running in another thread) to call the blocking API from other threads."
)
_SAME_LOOP = (
    "ResilientChatModel.{method}() was called on the gateway's own event loop, where waiting "
    "would deadlock it; use the async API there (await model.ainvoke(...), model.astream(...))."
)


@dataclass(frozen=True, slots=True)
class CallOptions:
    """The gateway arguments of one call: the model's fields, overridden per call."""

    route: str
    agent: str | None
    task_id: str | None
    max_tokens: int | None
    temperature: float | None
    timeout_seconds: float | None
    stop: tuple[str, ...] = ()


class ResilientChatModel(BaseChatModel):
    """A chat model that answers through a Bulwark gateway route: every call is one gateway
    call, with its retries, breakers, fallback and history row (agent ``"langchain"`` unless
    told otherwise)."""

    gateway: LLMGateway = Field(exclude=True)
    route: str = "default"
    agent: str | None = "langchain"
    task_id: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = None
    timeout_seconds: float | None = Field(default=None, gt=0)
    """Bounds each whole call (retries and fallbacks included): the gateway's deadline."""
    loop: asyncio.AbstractEventLoop | None = Field(default=None, exclude=True)
    """The gateway's event loop, for the blocking API (see the module docstring)."""

    @property
    def _llm_type(self) -> str:
        return "bulwark"

    @property
    def _identifying_params(self) -> Mapping[str, Any]:
        return {
            "route": self.route,
            "agent": self.agent,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        route = kwargs.get("route", self.route)
        params = LangSmithParams(ls_provider="bulwark", ls_model_name=route, ls_model_type="chat")
        if (temperature := kwargs.get("temperature", self.temperature)) is not None:
            params["ls_temperature"] = temperature
        if (max_tokens := kwargs.get("max_tokens", self.max_tokens)) is not None:
            params["ls_max_tokens"] = max_tokens
        if stop:
            params["ls_stop"] = stop
        return params

    def call_options(self, stop: Sequence[str] | None, kwargs: Mapping[str, Any]) -> CallOptions:
        """The fields, overridden by a call's keyword arguments (``TypeError`` for others)."""
        unknown = set(kwargs) - CALL_OPTIONS - {"stream"}  # `stream` is LangChain's own flag
        if unknown:
            raise TypeError(
                f"ResilientChatModel does not take {', '.join(sorted(unknown))}; per-call "
                f"options are {', '.join(sorted(CALL_OPTIONS))} (and stop)."
            )
        values = {name: kwargs.get(name, getattr(self, name)) for name in CALL_OPTIONS}
        return CallOptions(**values, stop=tuple(s for s in stop or () if s))

    # --- the async core: runs on the gateway's loop ------------------------------------------

    async def _complete(self, messages: list[BaseMessage], options: CallOptions) -> ChatResult:
        result = await self._gateway_complete(messages, options)
        message = answer_message(result, cut_at_stop(result.text, options.stop))
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _gateway_complete(
        self,
        messages: list[BaseMessage],
        options: CallOptions,
        schema: type[BaseModel] | None = None,
    ) -> LLMResult:
        return await self.gateway.complete(
            messages,
            route=options.route,
            agent=options.agent,
            task_id=options.task_id,
            schema=schema,
            max_tokens=options.max_tokens,
            temperature=options.temperature,
            deadline=self._deadline(options),
        )

    async def _texts(
        self, messages: list[BaseMessage], options: CallOptions
    ) -> AsyncGenerator[str, None]:
        stream = self.gateway.stream(
            messages,
            route=options.route,
            agent=options.agent,
            task_id=options.task_id,
            max_tokens=options.max_tokens,
            temperature=options.temperature,
            deadline=self._deadline(options),
        )
        cutter = StopCutter(options.stop)
        try:
            async for chunk in stream:
                if not cutter.stopped and (text := cutter.feed(chunk)):
                    yield text  # once stopped, the rest is read so that the call completes
            if tail := cutter.flush():
                yield tail
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    def _deadline(self, options: CallOptions) -> float | None:
        if options.timeout_seconds is None:
            return None
        return self.gateway.clock.monotonic() + options.timeout_seconds

    # --- LangChain's hooks ----------------------------------------------------------------------

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        options = self.call_options(stop, kwargs)
        return await self._on_loop(lambda: self._complete(messages, options))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        texts = self._texts(messages, self.call_options(stop, kwargs))
        try:
            while (text := await self._on_loop(lambda: _next_text(texts))) is not None:
                yield ChatGenerationChunk(message=AIMessageChunk(content=text))
        finally:
            await self._on_loop(texts.aclose)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        options = self.call_options(stop, kwargs)
        return self._blocking("invoke", lambda: self._complete(messages, options))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        options = self.call_options(stop, kwargs)
        self._blocking_loop("stream")  # fail before creating anything
        texts = self._texts(messages, options)
        try:
            while (text := self._blocking("stream", lambda: _next_text(texts))) is not None:
                yield ChatGenerationChunk(message=AIMessageChunk(content=text))
        finally:
            self._blocking("stream", texts.aclose)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """A runnable answering with an instance of ``schema`` (a pydantic model class),
        through ``gateway.complete(schema=...)``. The gateway picks the provider's JSON mode,
        so ``method`` and ``strict`` are accepted and ignored. Invalid output, after the
        gateway's one repair request, raises ``PermanentError`` (category ``invalid_output``)
        even with ``include_raw=True``."""
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            raise NotImplementedError(
                "ResilientChatModel.with_structured_output takes a pydantic model class; "
                "for other schemas ask for JSON in the prompt and parse the answer."
            )
        if set(kwargs) - {"method", "strict"}:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")
        model: type[BaseModel] = schema

        async def structured(value: LanguageModelInput) -> dict[str, Any] | BaseModel:
            messages = self._convert_input(value).to_messages()
            options = self.call_options(None, {})
            result = await self._gateway_complete(messages, options, model)
            parsed: BaseModel = result.parsed
            if include_raw:
                raw = answer_message(result, result.text)
                return {"raw": raw, "parsed": parsed, "parsing_error": None}
            return parsed

        async def on_loop(value: LanguageModelInput) -> dict[str, Any] | BaseModel:
            return await self._on_loop(lambda: structured(value))

        def blocking(value: LanguageModelInput) -> dict[str, Any] | BaseModel:
            return self._blocking("invoke", lambda: structured(value))

        return RunnableLambda(blocking, afunc=on_loop, name=f"ResilientChatModel[{model.__name__}]")

    # --- which loop runs what -------------------------------------------------------------------

    async def _on_loop(self, step: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Await ``step()`` on the gateway's loop: here, or handed over when ``loop`` is
        another one (cancelling the caller cancels it there)."""
        loop = self.loop
        if loop is None or loop is asyncio.get_running_loop():
            return await step()
        if not loop.is_running():
            raise RuntimeError("ResilientChatModel.loop is not running (or closed).")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(step(), loop))

    def _blocking_loop(self, method: str) -> asyncio.AbstractEventLoop:
        loop = self.loop
        if loop is None:
            raise RuntimeError(_NO_LOOP.format(method=method))
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError(_SAME_LOOP.format(method=method))
        if not loop.is_running():
            raise RuntimeError("ResilientChatModel.loop is not running (or closed).")
        return loop

    def _blocking(self, method: str, step: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``step()`` on the gateway's loop and wait for it in this thread."""
        loop = self._blocking_loop(method)  # before step(): a refused call creates nothing
        future = asyncio.run_coroutine_threadsafe(step(), loop)
        try:
            return future.result()
        except BaseException:  # e.g. KeyboardInterrupt while waiting: stop the call too
            future.cancel()
            raise


def answer_message(result: LLMResult, text: str) -> AIMessage:
    """The ``AIMessage`` for a gateway result: text, token usage, and where it came from."""
    usage = result.usage
    return AIMessage(
        content=text,
        usage_metadata=UsageMetadata(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            total_tokens=usage.input_tokens + usage.output_tokens,
        ),
        response_metadata={
            "model_name": result.target,
            "target": result.target,
            "call_id": result.call_id,
            "attempts": result.attempts,
            "simulated": result.simulated,
            "replayed": result.replayed,
        },
    )


async def _next_text(texts: AsyncGenerator[str, None]) -> str | None:
    try:
        return await anext(texts)
    except StopAsyncIteration:
        return None


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest stop sequence in it."""
    found = [i for stop in stops if (i := text.find(stop)) != -1]
    return text[: min(found)] if found else text


class StopCutter:
    """Cuts streamed text at the first stop sequence. A chunk's tail that may be the start of
    a stop sequence is held back until the next chunk shows whether it is."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(stops)
        self.stopped = False
        self._pending = ""

    def feed(self, chunk: str) -> str:
        """The text of ``chunk`` that may be released now."""
        if not self.stops:
            return chunk
        buffer = self._pending + chunk
        cut = cut_at_stop(buffer, self.stops)
        if len(cut) < len(buffer):
            self.stopped, self._pending = True, ""
            return cut
        held = max(
            (n for stop in self.stops for n in range(1, len(stop)) if buffer.endswith(stop[:n])),
            default=0,
        )
        self._pending = buffer[len(buffer) - held :] if held else ""
        return buffer[: len(buffer) - held]

    def flush(self) -> str:
        """What was held back, at the end of the stream."""
        text, self._pending = self._pending, ""
        return text


__all__ = ["CALL_OPTIONS", "CallOptions", "ResilientChatModel", "StopCutter", "cut_at_stop"]
