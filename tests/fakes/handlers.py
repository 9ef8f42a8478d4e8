"""One client connection of the fake provider server: parse requests, act out behaviours."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes import wire
from tests.fakes.behaviours import Behaviour
from tests.fakes.http11 import (
    LAST_CHUNK,
    BadRequest,
    Request,
    encode_chunk,
    encode_response,
    encode_stream_head,
    read_request,
)
from tests.fakes.state import ScriptState
from tests.fakes.wire import Provider, dumps

JSON = "application/json"
SSE = "text/event-stream; charset=utf-8"


def provider_for(path: str) -> Provider | None:
    if path.endswith("/chat/completions"):
        return "openai"
    if path.endswith("/messages"):
        return "anthropic"
    return None


class ConnectionHandler:
    def __init__(
        self,
        state: ScriptState,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        errors: list[BaseException],
    ) -> None:
        self.state = state
        self.reader = reader
        self.writer = writer
        self.errors = errors
        self.reset = False

    async def run(self) -> None:
        try:
            while True:
                try:
                    request = await read_request(self.reader, self.writer)
                except BadRequest as exc:
                    self._send(400, {"error": {"message": str(exc)}}, {}, keep_alive=False)
                    break
                if request is None or not await self._dispatch(request):
                    break
                if not request.keep_alive:
                    break
                await self.writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except asyncio.CancelledError:
            pass  # the server is stopping
        except Exception as exc:
            self.errors.append(exc)
        finally:
            await self._close()

    async def _close(self) -> None:
        if self.reset:
            sock = self.writer.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.writer.transport.abort()
            return
        self.writer.close()
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await self.writer.wait_closed()

    def _send(
        self,
        status: int,
        body: Any,
        headers: dict[str, str],
        *,
        keep_alive: bool = True,
        content_type: str = JSON,
    ) -> None:
        data = body if isinstance(body, bytes) else dumps(body)
        all_headers = {"content-type": content_type, **headers}
        self.writer.write(encode_response(status, data, all_headers, keep_alive=keep_alive))

    async def _dispatch(self, request: Request) -> bool:
        """Answer one request; False when the connection must be closed afterwards."""
        path = request.path
        if path.startswith("/_control/"):
            status, payload = self._control(request)
            self._send(status, payload, {}, keep_alive=request.keep_alive)
            return True
        body: Any = None
        if request.body:
            with contextlib.suppress(ValueError):
                body = json.loads(request.body)
        provider = provider_for(path)
        if provider is None or request.method != "POST" or not isinstance(body, dict):
            self.state.record(
                provider, request.method, path, request.headers, body, request.body, None
            )
            status = 404 if provider is None else 405 if request.method != "POST" else 400
            message = f"{request.method} {path}: not a provider endpoint or not a JSON object"
            error = {"message": message, "type": "invalid_request_error", "param": None}
            self._send(status, {"error": {**error, "code": None}}, {})
            return True
        behaviour = self.state.next_behaviour(provider)
        self.state.record(
            provider, request.method, path, request.headers, body, request.body, behaviour
        )
        delay = self.state.latency_ms + behaviour.latency_ms
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        return await self._perform(behaviour, provider, body, request.keep_alive)

    async def _perform(
        self, b: Behaviour, provider: Provider, body: dict[str, Any], keep_alive: bool
    ) -> bool:
        id_header = wire.request_id_header(provider)
        request_id = b.headers.get(id_header) or wire.new_id("req_")
        headers = {id_header: request_id, **b.headers}
        streaming = body.get("stream") is True
        if b.kind == "drop":
            self.reset = b.reset
            return False
        if b.kind == "hang":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(b.seconds):
                    while await self.reader.read(65536):
                        pass  # wait for the client to give up (EOF), or the timeout
            return False
        if b.kind == "error":
            payload = wire.error_payload(b, provider, body, request_id)
            self._send(b.status, payload, headers, keep_alive=keep_alive)
            return True
        if b.kind == "garbage":
            text = str(b.body).encode()
            if streaming:
                event = b"event: message_start\n" if provider == "anthropic" else b""
                self._send(200, event + b"data: " + text + b"\n\n", headers, content_type=SSE)
            else:
                self._send(200, text, headers, content_type=b.content_type or JSON)
            return True
        if streaming:
            return await self._stream(b, provider, body, headers, keep_alive)
        if b.kind == "stream" and b.fail_after is not None:
            return False  # a non-streaming call cannot be cut mid-stream: drop it
        answer = (
            wire.openai_completion(b, body)
            if provider == "openai"
            else wire.anthropic_message(b, body)
        )
        self._send(200, answer, headers, keep_alive=keep_alive)
        return True

    async def _stream(
        self,
        b: Behaviour,
        provider: Provider,
        body: dict[str, Any],
        headers: dict[str, str],
        keep_alive: bool,
    ) -> bool:
        plan = (
            wire.openai_stream(b, body) if provider == "openai" else wire.anthropic_stream(b, body)
        )
        stream_headers = {"content-type": SSE, "cache-control": "no-cache", **headers}
        head = encode_stream_head(200, stream_headers, keep_alive=keep_alive)
        out = [head, *(encode_chunk(event) for event in plan.head)]
        for index, event in enumerate(plan.body):
            if b.fail_after is not None and index >= b.fail_after:
                self.writer.write(b"".join(out))
                await self.writer.drain()
                return False  # cut the body: the client sees an incomplete chunked read
            if b.chunk_delay_ms > 0:
                self.writer.write(b"".join(out))
                out.clear()
                await self.writer.drain()
                await asyncio.sleep(b.chunk_delay_ms / 1000)
            out.append(encode_chunk(event))
        if b.fail_after is not None and b.fail_after >= len(plan.body):
            self.writer.write(b"".join(out))
            await self.writer.drain()
            return False  # every content chunk, but no end of stream
        out.extend(encode_chunk(event) for event in plan.tail)
        out.append(LAST_CHUNK)
        self.writer.write(b"".join(out))
        return True

    # --- control endpoints -----------------------------------------------------------------

    def _control(self, request: Request) -> tuple[int, Any]:
        action = request.path.removeprefix("/_control/")
        try:
            data: Any = json.loads(request.body) if request.body else None
            if action == "stats" and request.method == "GET":
                query = parse_qs(urlsplit(request.target).query)
                with_requests = query.get("requests", ["1"])[0] not in ("0", "false")
                return 200, self.state.stats(with_requests=with_requests)
            if request.method != "POST":
                return 405, {"error": f"{request.method} /_control/{action}"}
            if action == "reset":
                self.state.reset()
                return 200, {"ok": True}
            if action == "script":
                items = data if isinstance(data, list) else data["behaviours"]
                provider = None if isinstance(data, list) else _provider(data.get("provider"))
                behaviours = [Behaviour.from_dict(item) for item in items]
                return 200, {"queued": self.state.script(behaviours, provider)}
            if action == "default":
                if "kind" in data:
                    raw, provider = data, None
                else:
                    raw, provider = data.get("behaviour"), _provider(data.get("provider"))
                behaviour = Behaviour.from_dict(raw) if raw else None
                self.state.set_default(behaviour, provider)
                return 200, {"ok": True}
            if action == "latency":
                self.state.set_latency(float(data["ms"]))
                return 200, {"ok": True}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return 400, {"error": f"bad control request: {exc!r}"}
        return 404, {"error": f"unknown control endpoint {request.path}"}


def _provider(value: Any) -> Provider | None:
    if value is None or value == "openai" or value == "anthropic":
        return value  # type: ignore[no-any-return]
    raise ValueError(f"provider must be null, 'openai' or 'anthropic', not {value!r}")
