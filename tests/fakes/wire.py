"""OpenAI chat-completions and Anthropic messages wire formats, rendered from a ``Behaviour``.

Shapes follow the SDK types (``openai.types.chat.ChatCompletion`` / ``ChatCompletionChunk``,
``anthropic.types.Message`` / ``RawMessageStreamEvent``) and the error bodies the SDKs parse.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.fakes.behaviours import ANTHROPIC_STOP, OPENAI_FINISH, Behaviour, status_phrase

Provider = Literal["openai", "anthropic"]
FINGERPRINT = "fp_fake0000"

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def request_id_header(provider: Provider | None) -> str:
    return "request-id" if provider == "anthropic" else "x-request-id"


@dataclass
class StreamPlan:
    """SSE events: ``head`` then one event per content chunk (``body``) then ``tail``."""

    head: list[bytes] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    tail: list[bytes] = field(default_factory=list)


def _estimate_tokens(value: Any) -> int:
    return max(1, len(json.dumps(value)) // 4) if value else 1


def _usage(b: Behaviour, request: dict[str, Any]) -> tuple[int, int]:
    """``b.usage``, else about 4 characters a token for the prompt and the answer."""
    if b.usage is not None:
        return b.usage
    prompt = {k: request.get(k) for k in ("system", "messages", "tools") if request.get(k)}
    text, _ = _text_and_chunks(b)
    output = text + (json.dumps(b.tool_input) if b.kind == "tool" else "")
    return _estimate_tokens(prompt), _estimate_tokens(output)


def _text_and_chunks(b: Behaviour) -> tuple[str, list[str]]:
    if b.kind == "stream":
        return "".join(b.chunks), list(b.chunks)
    return b.text, [b.text] if b.text else []


def _split(text: str) -> list[str]:
    half = len(text) // 2
    return [part for part in (text[:half], text[half:]) if part]


# --- OpenAI ---------------------------------------------------------------------------------


def openai_completion(b: Behaviour, request: dict[str, Any]) -> dict[str, Any]:
    text, _ = _text_and_chunks(b)
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    message["annotations"] = []
    if b.kind == "tool":
        message["content"] = b.text or None
        message["tool_calls"] = [_openai_tool_call(b)]
    prompt, completion = _usage(b, request)
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "gpt-fake"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": OPENAI_FINISH[b.finish],
            }
        ],
        "usage": _openai_usage(prompt, completion),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def _openai_tool_call(b: Behaviour) -> dict[str, Any]:
    arguments = json.dumps(b.tool_input)
    function = {"name": b.tool_name, "arguments": arguments}
    return {"id": new_id("call_"), "type": "function", "function": function}


def _openai_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_stream(b: Behaviour, request: dict[str, Any]) -> StreamPlan:
    include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.get("model", "gpt-fake"),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if include_usage:
        base["usage"] = None

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + dumps({**base, "choices": [choice]}) + b"\n\n"

    plan = StreamPlan()
    plan.head.append(event({"role": "assistant", "content": "", "refusal": None}))
    _, chunks = _text_and_chunks(b)
    if b.kind == "tool":
        if b.text:
            plan.head.append(event({"content": b.text}))
        call = _openai_tool_call(b)
        first = {**call, "index": 0, "function": {"name": b.tool_name, "arguments": ""}}
        plan.head.append(event({"tool_calls": [first]}))
        for piece in _split(call["function"]["arguments"]):
            delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
            plan.body.append(event(delta))
    else:
        plan.body.extend(event({"content": chunk}) for chunk in chunks)
    plan.tail.append(event({}, OPENAI_FINISH[b.finish]))
    if include_usage:
        prompt, completion = _usage(b, request)
        final = {**base, "choices": [], "usage": _openai_usage(prompt, completion)}
        plan.tail.append(b"data: " + dumps(final) + b"\n\n")
    plan.tail.append(b"data: [DONE]\n\n")
    return plan


# --- Anthropic ------------------------------------------------------------------------------


def _anthropic_blocks(b: Behaviour) -> list[dict[str, Any]]:
    text, _ = _text_and_chunks(b)
    blocks: list[dict[str, Any]] = []
    if b.kind != "tool" or text:
        blocks.append({"type": "text", "text": text})
    if b.kind == "tool":
        tool = {"type": "tool_use", "id": new_id("toolu_"), "name": b.tool_name}
        blocks.append({**tool, "input": b.tool_input})
    return blocks


def _anthropic_usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard",
    }


def anthropic_message(b: Behaviour, request: dict[str, Any]) -> dict[str, Any]:
    blocks = _anthropic_blocks(b)
    input_tokens, output_tokens = _usage(b, request)
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": request.get("model", "claude-fake"),
        "content": blocks,
        "stop_reason": ANTHROPIC_STOP[b.finish],
        "stop_sequence": None,
        "usage": _anthropic_usage(input_tokens, output_tokens),
    }


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + dumps({"type": event, **data}) + b"\n\n"


def anthropic_stream(b: Behaviour, request: dict[str, Any]) -> StreamPlan:
    message = anthropic_message(b, request)
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None}
    start["usage"] = _anthropic_usage(usage["input_tokens"], 1)
    plan = StreamPlan(head=[_sse("message_start", {"message": start})])
    _, chunks = _text_and_chunks(b)
    last = len(message["content"]) - 1
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": chunk} for chunk in chunks]
        else:
            opening = {**block, "input": {}}
            pieces = _split(json.dumps(block["input"]))
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        plan.head.append(_sse("content_block_start", {"index": index, "content_block": opening}))
        if index == 0:
            plan.head.append(_sse("ping", {}))
        events = [_sse("content_block_delta", {"index": index, "delta": d}) for d in deltas]
        stop = _sse("content_block_stop", {"index": index})
        if index == last:  # the chunks fail_after counts: the last block's deltas
            plan.body.extend(events)
            plan.tail.append(stop)
        else:
            plan.head.extend([*events, stop])
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    out = {"output_tokens": usage["output_tokens"]}
    plan.tail.append(_sse("message_delta", {"delta": delta, "usage": out}))
    plan.tail.append(_sse("message_stop", {}))
    return plan


# --- errors ---------------------------------------------------------------------------------


def error_payload(
    b: Behaviour, provider: Provider, request: dict[str, Any], request_id: str
) -> bytes:
    """The error body: ``b.body`` as-is when given, else the provider's error format."""
    if isinstance(b.body, str):
        return b.body.encode()
    if b.body is not None:
        return dumps(b.body)
    model = str(request.get("model", ""))
    message = b.message or status_phrase(b.status)
    if provider == "openai":
        error = {
            "message": message.replace("{model}", model),
            "type": b.openai_type or _openai_type(b.status),
            "param": b.openai_param,
            "code": b.openai_code,
        }
        return dumps({"error": error})
    status_type = "api_error" if b.status >= 500 else "invalid_request_error"
    err: dict[str, Any] = {
        "type": b.anthropic_type or _ANTHROPIC_TYPES.get(b.status, status_type),
        "message": (b.anthropic_message or message).replace("{model}", model),
    }
    if b.anthropic_error_code:
        err["details"] = {"error_code": b.anthropic_error_code}
    return dumps({"type": "error", "error": err, "request_id": request_id})


def _openai_type(status: int) -> str:
    if status == 429:
        return "requests"
    return "server_error" if status >= 500 else "invalid_request_error"
