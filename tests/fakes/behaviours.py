"""What the fake provider does with one request: a ``Behaviour`` and the helpers that build one.

A behaviour is provider-neutral: the server renders it in the wire format of the endpoint that
received the request (OpenAI chat completions or Anthropic messages). Error behaviours carry
both the OpenAI ``type``/``code``/``param`` and the Anthropic ``error.type`` (and optional
``error.details.error_code``), so one script serves either provider. Behaviours are plain
frozen dataclasses and round-trip through JSON (``to_dict``/``from_dict``) for the control
endpoints, e.g. ``{"kind": "error", "status": 429, "headers": {"retry-after": "1"}}``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, TypedDict, Unpack, get_args

Kind = Literal["reply", "tool", "stream", "error", "hang", "drop", "garbage"]
# Provider-neutral finish: OpenAI finish_reason / Anthropic stop_reason.
Finish = Literal["stop", "length", "content_filter", "tool"]

OPENAI_FINISH: dict[str, str] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool": "tool_calls",
}
ANTHROPIC_STOP: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "content_filter": "refusal",
    "tool": "tool_use",
}

DEFAULT_TEXT = "Hello from the fake provider."
GARBAGE_BODY = "<html><body>upstream proxy says hi</body></html> {not json"


@dataclass(frozen=True)
class Behaviour:
    """One scripted answer. Build it with the helpers below rather than by hand."""

    kind: Kind
    # reply / stream / tool
    text: str = ""
    chunks: tuple[str, ...] = ()
    fail_after: int | None = None  # stream: drop the connection after this many content chunks
    chunk_delay_ms: float = 0.0
    tool_name: str = ""
    tool_input: dict[str, Any] = field(default_factory=dict)
    finish: Finish = "stop"
    usage: tuple[int, int] | None = None  # (input tokens, output tokens); estimated if None
    # error / garbage
    status: int = 200
    message: str = ""  # "{model}" is replaced by the requested model
    anthropic_message: str | None = None  # None: same as message
    openai_type: str | None = None
    openai_code: str | None = None
    openai_param: str | None = None
    anthropic_type: str | None = None
    anthropic_error_code: str | None = None
    body: Any = None  # error: a raw JSON body sent as-is; garbage: the text sent
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # hang / drop
    seconds: float | None = None  # hang: None = until the client gives up (or the server stops)
    reset: bool = False  # drop: send a TCP RST instead of a clean FIN
    # every behaviour
    latency_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in get_args(Kind):
            raise ValueError(f"unknown behaviour kind {self.kind!r}")
        if self.finish not in get_args(Finish):
            raise ValueError(f"unknown finish {self.finish!r}")

    def with_latency(self, ms: float) -> Behaviour:
        """The same behaviour, answered ``ms`` milliseconds later."""
        return dataclasses.replace(self, latency_ms=ms)

    def with_headers(self, headers: Mapping[str, str]) -> Behaviour:
        """The same behaviour with extra response headers (names are lower-cased)."""
        merged = {**self.headers, **{k.lower(): str(v) for k, v in headers.items()}}
        return dataclasses.replace(self, headers=merged)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, without the fields left at their defaults."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            default = f.default_factory() if callable(f.default_factory) else f.default
            if f.name != "kind" and value != default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Behaviour:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown behaviour fields: {sorted(unknown)}")
        values = dict(data)
        if "chunks" in values:
            values["chunks"] = tuple(values["chunks"])
        if values.get("usage") is not None:
            values["usage"] = tuple(values["usage"])
        if "headers" in values:
            values["headers"] = {str(k).lower(): str(v) for k, v in values["headers"].items()}
        return cls(**values)


def flatten(items: Iterable[Behaviour | Iterable[Behaviour]]) -> list[Behaviour]:
    out: list[Behaviour] = []
    for item in items:
        if isinstance(item, Behaviour):
            out.append(item)
        else:
            out.extend(item)
    return out


# --- successful answers -------------------------------------------------------------------


def reply(
    text: str = DEFAULT_TEXT, *, finish: Finish = "stop", usage: tuple[int, int] | None = None
) -> Behaviour:
    """A normal answer; streamed as one chunk when the request asks for a stream."""
    return Behaviour("reply", text=text, finish=finish, usage=usage)


def reply_json(value: Any) -> Behaviour:
    """An answer whose text is ``value`` as JSON (for ``response_format`` json_schema calls)."""
    return reply(json.dumps(value))


def reply_tool(name: str, input: Mapping[str, Any], *, text: str = "") -> Behaviour:
    """A tool call: Anthropic ``tool_use`` block (after a text block if ``text``), OpenAI
    ``tool_calls``; stop/finish reason ``tool_use`` / ``tool_calls``."""
    return Behaviour("tool", text=text, tool_name=name, tool_input=dict(input), finish="tool")


def stream(
    chunks: Iterable[str],
    *,
    fail_after: int | None = None,
    chunk_delay_ms: float = 0.0,
    finish: Finish = "stop",
) -> Behaviour:
    """A streamed answer, one SSE content event per chunk. ``fail_after=N`` sends N content
    chunks and then closes the connection mid-body. A non-streaming request gets the joined
    text (or, with ``fail_after``, a dropped connection)."""
    return Behaviour(
        "stream",
        chunks=tuple(chunks),
        fail_after=fail_after,
        chunk_delay_ms=chunk_delay_ms,
        finish=finish,
    )


# --- faults ---------------------------------------------------------------------------------


def hang(seconds: float | None = None) -> Behaviour:
    """Send nothing; close the connection after ``seconds`` (None: when the client gives up)."""
    return Behaviour("hang", seconds=seconds)


def drop(*, reset: bool = False) -> Behaviour:
    """Close the connection without answering (``reset=True``: abort with a TCP RST)."""
    return Behaviour("drop", reset=reset)


def garbage(body: str = GARBAGE_BODY, *, content_type: str = "application/json") -> Behaviour:
    """A 200 whose body is not JSON (for a streaming request: an SSE event with non-JSON data)."""
    return Behaviour("garbage", body=body, content_type=content_type)


def latency(ms: float, behaviour: Behaviour | None = None) -> Behaviour:
    """``behaviour`` (default: a normal reply) answered ``ms`` milliseconds late."""
    return (behaviour or reply()).with_latency(ms)


def fail_first(n: int, behaviour: Behaviour) -> list[Behaviour]:
    """``n`` copies of ``behaviour``; the requests after them get the default behaviour."""
    return [behaviour] * n


class ErrorExtras(TypedDict, total=False):
    """Keyword arguments of ``error()`` and of every error helper (see ``error()``)."""

    anthropic_message: str
    type: str
    code: str
    param: str
    anthropic_type: str
    anthropic_error_code: str
    body: Any
    headers: Mapping[str, str]
    retry_after: float
    retry_after_ms: int
    should_retry: bool
    request_id: str


class ErrorOptions(ErrorExtras, total=False):
    message: str


def error(status: int, **opts: Unpack[ErrorOptions]) -> Behaviour:
    """An HTTP error in the provider's real format.

    OpenAI: ``{"error": {"message", "type", "param", "code"}}`` from ``message``, ``type``,
    ``param``, ``code``. Anthropic: ``{"type": "error", "error": {"type", "message"[,
    "details": {"error_code"}]}, "request_id"}`` from ``anthropic_type`` (default from the
    status: 400 invalid_request_error, 401 authentication_error, 403 permission_error, 404
    not_found_error, 429 rate_limit_error, 504 timeout_error, 529 overloaded_error, other 5xx
    api_error), ``anthropic_message`` (default ``message``) and ``anthropic_error_code``.
    ``body`` replaces the rendered body for both. ``retry_after`` / ``retry_after_ms`` /
    ``should_retry`` set ``retry-after`` / ``retry-after-ms`` / ``x-should-retry``;
    ``request_id`` is sent as ``x-request-id`` (OpenAI) / ``request-id`` (Anthropic), a fresh
    id otherwise.
    """
    hdrs = {k.lower(): str(v) for k, v in opts.get("headers", {}).items()}
    if "retry_after" in opts:
        hdrs["retry-after"] = _number(opts["retry_after"])
    if "retry_after_ms" in opts:
        hdrs["retry-after-ms"] = str(opts["retry_after_ms"])
    if "should_retry" in opts:
        hdrs["x-should-retry"] = "true" if opts["should_retry"] else "false"
    if "request_id" in opts:
        hdrs["x-request-id"] = hdrs["request-id"] = opts["request_id"]
    message = opts.get("message", status_phrase(status))
    return Behaviour(
        "error",
        status=status,
        message=message,
        anthropic_message=opts.get("anthropic_message", message),
        openai_type=opts.get("type"),
        openai_code=opts.get("code"),
        openai_param=opts.get("param"),
        anthropic_type=opts.get("anthropic_type"),
        anthropic_error_code=opts.get("anthropic_error_code"),
        body=opts.get("body"),
        headers=hdrs,
    )


def rate_limit(**kw: Unpack[ErrorOptions]) -> Behaviour:
    """429 rate limit (OpenAI type ``requests``, code ``rate_limit_exceeded``; Anthropic
    ``rate_limit_error``), e.g. ``rate_limit(retry_after=2)`` or ``retry_after_ms=500``."""
    kw.setdefault(
        "message",
        "Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
        "Limit 3, Used 3, Requested 1. Please try again in 20s.",
    )
    kw.setdefault(
        "anthropic_message",
        "This request would exceed the rate limit for your organization of 50 requests per "
        "minute. Please reduce the prompt length or the maximum tokens requested.",
    )
    kw.setdefault("type", "requests")
    kw.setdefault("code", "rate_limit_exceeded")
    return error(429, **kw)


def quota_exceeded(**kw: Unpack[ErrorOptions]) -> Behaviour:
    """429 that waiting will not fix: OpenAI type/code ``insufficient_quota``; Anthropic
    ``rate_limit_error`` with ``details.error_code`` ``enforced_spend_limit_reached`` (the SDK
    raises ``EnforcedSpendLimitReachedError``, a ``RateLimitError``)."""
    kw.setdefault(
        "message",
        "You exceeded your current quota, please check your plan and billing details.",
    )
    kw.setdefault(
        "anthropic_message",
        "You have reached your specified API usage limits. You will regain access on "
        "2030-01-01 at 00:00 UTC.",
    )
    kw.setdefault("type", "insufficient_quota")
    kw.setdefault("code", "insufficient_quota")
    kw.setdefault("anthropic_error_code", "enforced_spend_limit_reached")
    return error(429, **kw)


def overloaded(**kw: Unpack[ErrorOptions]) -> Behaviour:
    """529 ``overloaded_error`` (Anthropic's overload; an OpenAI client gets the same 529)."""
    kw.setdefault("message", "Overloaded")
    kw.setdefault("type", "server_error")
    return error(529, **kw)


def server_error(status: int = 503, **kw: Unpack[ErrorOptions]) -> Behaviour:
    """5xx: OpenAI type ``server_error``; Anthropic ``api_error`` (``timeout_error`` for 504)."""
    kw.setdefault("message", "The server had an error while processing your request.")
    kw.setdefault("anthropic_message", "Internal server error")
    kw.setdefault("type", "server_error")
    return error(status, **kw)


def auth_error(**kw: Unpack[ErrorOptions]) -> Behaviour:
    """401: OpenAI code ``invalid_api_key``; Anthropic ``authentication_error``."""
    kw.setdefault(
        "message",
        "Incorrect API key provided: test. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    )
    kw.setdefault("anthropic_message", "invalid x-api-key")
    kw.setdefault("type", "invalid_request_error")
    kw.setdefault("code", "invalid_api_key")
    return error(401, **kw)


def context_length(**kw: Unpack[ErrorOptions]) -> Behaviour:
    """400: the prompt does not fit (OpenAI code ``context_length_exceeded``; Anthropic
    ``invalid_request_error`` "prompt is too long: ...")."""
    kw.setdefault(
        "message",
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 210000 tokens. Please reduce the length of the messages.",
    )
    kw.setdefault("anthropic_message", "prompt is too long: 210000 tokens > 200000 maximum")
    kw.setdefault("type", "invalid_request_error")
    kw.setdefault("code", "context_length_exceeded")
    kw.setdefault("param", "messages")
    return error(400, **kw)


def content_filter(**kw: Unpack[ErrorOptions]) -> Behaviour:
    """400: the provider refused the content (OpenAI code ``content_policy_violation``;
    Anthropic "Output blocked by content filtering policy"). For a 200 answer stopped by the
    filter use ``reply(text, finish="content_filter")`` (finish_reason content_filter /
    stop_reason refusal)."""
    kw.setdefault(
        "message",
        "Your request was rejected as a result of our safety system. Your prompt may contain "
        "text that is not allowed by our safety system.",
    )
    kw.setdefault("anthropic_message", "Output blocked by content filtering policy")
    kw.setdefault("type", "invalid_request_error")
    kw.setdefault("code", "content_policy_violation")
    return error(400, **kw)


def model_not_found(**kw: Unpack[ErrorOptions]) -> Behaviour:
    """404: unknown model (OpenAI code ``model_not_found``; Anthropic ``not_found_error``)."""
    kw.setdefault("message", "The model `{model}` does not exist or you do not have access to it.")
    kw.setdefault("anthropic_message", "model: {model}")
    kw.setdefault("type", "invalid_request_error")
    kw.setdefault("code", "model_not_found")
    return error(404, **kw)


def bad_request(message: str = "Invalid request.", **kw: Unpack[ErrorExtras]) -> Behaviour:
    """400 ``invalid_request_error``."""
    kw.setdefault("type", "invalid_request_error")
    return error(400, message=message, **kw)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Overloaded" if status == 529 else f"HTTP {status}"
