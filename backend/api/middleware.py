"""Two pure ASGI middlewares: the request body size limit (checked on ``Content-Length``
before anything is read, and on the bytes actually received), and the last resort that turns
an unexpected exception into a generic 500 answer, logged with its traceback."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api.errors import error_response
from backend.services.errors import PayloadTooLargeError

logger = logging.getLogger("bulwark.api")

_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with 413 ``payload_too_large``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(declared, scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(None, scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, size: int | None, scope: Scope, receive: Receive, send: Send) -> None:
        exc = PayloadTooLargeError(size, self.max_bytes)
        response = error_response(413, exc.code, exc.message, {"Connection": "close"})
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class CatchAllMiddleware:
    """Answer 500 ``internal_error`` for any exception no handler took; log it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            logger.exception("unexpected error on %s %s", scope["method"], scope["path"])
            if started:
                raise
            response = error_response(
                500, "internal_error", "an unexpected error happened; it has been logged"
            )
            await response(scope, receive, send)


__all__ = ["BodyLimitMiddleware", "CatchAllMiddleware"]
