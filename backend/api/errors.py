"""Every error answer of the API, in one shape: ``{"error": {"code", "message"}}``.

One place maps what went wrong to HTTP:

* service errors (:mod:`backend.services.errors`) by their class (table below);
* request validation: malformed JSON → 422 ``invalid_json``; a task type no agent serves →
  422 ``unknown_task_type``; anything else → 422 ``validation_error`` naming the fields;
* routing: 404 ``not_found``, 405 ``method_not_allowed``;
* the database unreachable (SQLAlchemy ``DBAPIError``, ``OSError``, timeouts) → 503
  ``database_unavailable`` with ``Retry-After``;
* anything else → 500 ``internal_error``, logged with its traceback, never shown
  (:class:`backend.api.middleware.CatchAllMiddleware`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.core.redact import redact
from backend.services import errors as e
from backend.services.health import RETRY_AFTER_SECONDS
from backend.services.tasks import field_path

logger = logging.getLogger("bulwark.api")

STATUS: Sequence[tuple[type[e.ServiceError], int]] = (
    (e.NotFoundError, 404),
    (e.UnauthorizedError, 401),
    (e.ForbiddenError, 403),
    (e.InvalidRequestError, 422),
    (e.PayloadTooLargeError, 413),
    (e.ConflictError, 409),
    (e.TooManyQueuedError, 429),
    (e.DatabaseUnavailableError, 503),
)
HTTP_CODES: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
UNAVAILABLE: tuple[type[Exception], ...] = (DBAPIError, PoolTimeoutError, OSError)


class InvalidJsonError(e.InvalidRequestError):
    code = "invalid_json"


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    # Messages may quote what the client sent; a secret in it is never sent back.
    return JSONResponse(
        {"error": {"code": code, "message": redact(message)}}, status_code=status, headers=headers
    )


def service_error_response(exc: e.ServiceError) -> JSONResponse:
    status = next((s for cls, s in STATUS if isinstance(exc, cls)), 500)
    headers: dict[str, str] = {}
    if isinstance(exc, e.RetryLaterError):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, e.UnauthorizedError):
        headers["WWW-Authenticate"] = "Bearer"
    return error_response(status, exc.code, exc.message, headers)


def _request_error(errors: Sequence[Any], task_types: Iterable[str]) -> e.ServiceError:
    """The service error a FastAPI validation failure amounts to."""
    known = set(task_types)
    fields: list[tuple[str, str]] = []
    for error in errors:
        kind = error.get("type")
        loc = tuple(error.get("loc", ()))
        ctx = error.get("ctx") or {}
        if kind == "json_invalid":
            detail = ctx.get("error", "not valid JSON")
            return InvalidJsonError([("", f"the request body is not valid JSON: {detail}")])
        body = loc[:1] == ("body",)
        loc = loc[1:]
        if body and kind == "union_tag_invalid":
            return e.UnknownTaskTypeError(ctx.get("tag"), known)
        if body and kind == "literal_error" and loc == ("type",):
            return e.UnknownTaskTypeError(error.get("input"), known)
        if body and kind == "union_tag_not_found":
            fields.append(("type", f"Field required (valid types: {', '.join(sorted(known))})"))
            continue
        if body and len(loc) > 1 and loc[0] in known:
            loc = loc[1:]  # the discriminated union's tag
        fields.append((field_path(loc) or "body", str(error.get("msg", "invalid"))))
    return e.InvalidRequestError(fields or [("body", "invalid request")])


#: FastAPI's HTTPException detail when it cannot decode a request body.
BODY_PARSE_ERROR = "There was an error parsing the body"


def install_error_handlers(app: FastAPI, task_types: Iterable[str]) -> None:
    """Register the handlers that turn exceptions into error answers."""
    types = sorted(task_types)

    async def on_service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, e.ServiceError)
        return service_error_response(exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return service_error_response(_request_error(exc.errors(), types))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        if exc.status_code == 400 and message == BODY_PARSE_ERROR:
            # FastAPI's answer to a body it cannot decode (bad UTF-8, nesting too deep):
            # malformed JSON, like a syntax error.
            return error_response(
                422, "invalid_json", "the body is not valid JSON (UTF-8, not nested too deeply)"
            )
        return error_response(exc.status_code, code, message, exc.headers)

    async def on_unavailable(request: Request, exc: Exception) -> JSONResponse:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        logger.warning(
            "database unavailable on %s %s: %s: %s",
            request.method,
            request.url.path,
            type(cause).__name__,
            cause,
        )
        return service_error_response(
            e.DatabaseUnavailableError(
                "the database is not reachable; retry later", RETRY_AFTER_SECONDS
            )
        )

    app.add_exception_handler(e.ServiceError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for exc_type in UNAVAILABLE:
        app.add_exception_handler(exc_type, on_unavailable)


__all__ = [
    "error_response",
    "install_error_handlers",
    "service_error_response",
]
