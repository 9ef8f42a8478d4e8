"""Error classification: :func:`classify` turns any exception into the one
:class:`Classification` that the retry policy and the circuit breaker share.

Evidence is weighed in order: the exception's **type** (Bulwark's own errors, cancellation,
SDK/httpx/httpx2/builtin timeouts and connection errors, OpenAI finish-reason errors); then an
HTTP **status** refined by the **error codes and message in the body**; then, last, the
**message text**. A wrapped error is found through ``__cause__``. ``x-should-retry`` overrides
``transient`` as the official SDKs do. The SDKs are never imported here: an exception of an SDK
type can only exist once its module is loaded, so only loaded modules are consulted.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import math
import re
import socket
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import ModuleType
from typing import Any

from backend.core.errors import (
    TRANSIENT_CATEGORIES,
    BulwarkError,
    Classification,
    ErrorCategory,
    PermanentError,
    ProviderError,
    TransientError,
)
from backend.core.redact import redact

__all__ = ["classify"]

C = ErrorCategory
_MAX_MESSAGE = 300
_MAX_CAUSES = 8


def _by_name(table: dict[ErrorCategory, str]) -> dict[str, ErrorCategory]:
    """Invert a category -> space-separated names table."""
    return {name: category for category, names in table.items() for name in names.split()}


_SDK_MODULES = ("openai", "anthropic", "httpx", "httpx2")
# "module.Class" names per category, most specific first: the SDKs' APITimeoutError subclasses
# their APIConnectionError.
_SDK_TYPES: tuple[tuple[ErrorCategory, str], ...] = (
    (
        C.TIMEOUT,
        "openai.APITimeoutError anthropic.APITimeoutError httpx.TimeoutException "
        "httpx2.TimeoutException",
    ),
    (
        C.CONNECTION_ERROR,
        "openai.APIConnectionError anthropic.APIConnectionError httpx.NetworkError "
        "httpx.RemoteProtocolError httpx.ProxyError httpx2.NetworkError "
        "httpx2.RemoteProtocolError httpx2.ProxyError",
    ),
    (C.INVALID_OUTPUT, "openai.LengthFinishReasonError"),
    (C.CONTENT_FILTER, "openai.ContentFilterFinishReasonError"),
)
_NETWORK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ["EHOSTUNREACH", "ENETUNREACH", "ENETDOWN", "EHOSTDOWN", "ENETRESET", "ENOTCONN"]
    if hasattr(errno, name)
)


_Types = tuple[tuple[tuple[type[BaseException], ...], ErrorCategory], ...]


@functools.lru_cache(maxsize=8)
def _resolve(modules: tuple[ModuleType | None, ...]) -> tuple[_Types, tuple[type[Any], ...]]:
    """(exception types per category, httpx/httpx2 Response types) of the loaded modules."""
    loaded = dict(zip(_SDK_MODULES, modules, strict=True))

    def lookup(names: str) -> tuple[type[Any], ...]:
        pairs = (name.split(".") for name in names.split())
        return tuple(t for m, n in pairs if isinstance(t := getattr(loaded[m], n, None), type))

    by_category = []
    for category, names in _SDK_TYPES:
        if types := tuple(t for t in lookup(names) if issubclass(t, BaseException)):
            by_category.append((types, category))
    return tuple(by_category), lookup("httpx.Response httpx2.Response")


def _loaded_types() -> tuple[_Types, tuple[type[Any], ...]]:
    return _resolve(tuple(sys.modules.get(name) for name in _SDK_MODULES))


def _category_by_type(exc: BaseException) -> ErrorCategory | None:
    for types, category in _loaded_types()[0]:
        if isinstance(exc, types):
            return category
    if isinstance(exc, TimeoutError):  # also asyncio.TimeoutError and socket.timeout
        return C.TIMEOUT
    if isinstance(exc, ConnectionError | socket.gaierror | socket.herror):
        return C.CONNECTION_ERROR
    if isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS:
        return C.CONNECTION_ERROR
    return None


_STATUS: dict[int, ErrorCategory] = {
    **dict.fromkeys((400, 413, 422), C.INVALID_REQUEST),
    **dict.fromkeys((401, 403), C.AUTH_ERROR),
    402: C.QUOTA_EXCEEDED,
    404: C.MODEL_NOT_FOUND,
    408: C.TIMEOUT,
    409: C.SERVER_ERROR,  # lock conflicts; the SDKs retry them
    429: C.RATE_LIMIT,
    529: C.OVERLOADED,
}
# Body codes (OpenAI error.code and error.type; Anthropic error.type and
# error.details.error_code) that decide the category whatever the status...
_DECISIVE_CODES = _by_name(
    {
        C.QUOTA_EXCEEDED: "insufficient_quota billing_hard_limit_reached billing_error "
        "contract_spend_limit_reached enforced_spend_limit_reached "
        "linked_organization_spend_limit_reached linked_organization_billing_unavailable",
        C.CONTEXT_LENGTH: "context_length_exceeded",
        C.CONTENT_FILTER: "content_policy_violation content_filter",
        C.OVERLOADED: "overloaded_error",
    }
)
# ... and those that speak only when the status does not (an error event in a 200 stream).
_HINT_CODES = _by_name(
    {
        C.RATE_LIMIT: "rate_limit_error rate_limit_exceeded ramp_limit_exceeded",
        C.AUTH_ERROR: "authentication_error permission_error invalid_api_key",
        C.MODEL_NOT_FOUND: "not_found_error model_not_found",
        C.INVALID_REQUEST: "invalid_request_error",
        C.TIMEOUT: "timeout_error",
        C.SERVER_ERROR: "api_error server_error",
    }
)
# Not a bare "billing": OpenAI's rate-limit messages link to the billing page.
_QUOTA_TEXT = re.compile(
    r"exceeded your current quota|insufficient[ _]quota|billing[ _]hard[ _]limit"
    r"|credit balance|spend(?:ing)? limit|usage limits?"
)
_CONTEXT_TEXT = re.compile(
    r"context[ _]length|maximum context|context window|prompt is too long"
    r"|exceeds? (?:the )?context limit|reduce the length of the (?:messages|prompt)"
)
_CONTENT_TEXT = re.compile(
    r"content[ _]?(?:policy|filter|management)|usage polic(?:y|ies)|safety system"
)


def _category_for_status(status: int, codes: frozenset[str], text: str) -> ErrorCategory:
    """The category of an HTTP error; ``text`` is the lower-cased error message."""
    for code in codes:
        if code in _DECISIVE_CODES:
            return _DECISIVE_CODES[code]
    if status in (400, 402, 403, 413, 422, 429) and _QUOTA_TEXT.search(text):
        return C.QUOTA_EXCEEDED
    if status in (400, 413, 422):
        if _CONTEXT_TEXT.search(text):
            return C.CONTEXT_LENGTH
        if _CONTENT_TEXT.search(text):
            return C.CONTENT_FILTER
    category = _STATUS.get(status) or (C.SERVER_ERROR if 500 <= status <= 599 else None)
    if category is not None:
        return category
    hinted = [_HINT_CODES[code] for code in codes if code in _HINT_CODES]
    return hinted[0] if hinted else _category_by_text(text)


def _status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    for value in (
        getattr(exc, "status_code", None),
        getattr(exc, "status", None),
        getattr(response, "status_code", None),
    ):
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


def _body_of(exc: BaseException) -> object:
    body = getattr(exc, "body", None)
    if body is not None:
        return body
    response = getattr(exc, "response", None)
    if isinstance(response, _loaded_types()[1]):  # reading one never does I/O
        try:
            return response.json()
        except (RuntimeError, ValueError):  # not read yet (a stream), or not JSON
            return None
    return None


def _error_fields(body: object) -> tuple[frozenset[str], str]:
    """Lower-cased codes and the message of an OpenAI- or Anthropic-shaped error body."""
    error = body.get("error", body) if isinstance(body, Mapping) else body
    if isinstance(error, str):
        return frozenset(), error
    if not isinstance(error, Mapping):
        return frozenset(), ""
    details = error.get("details")
    raw = (
        error.get("code"),
        error.get("type"),
        details.get("error_code") if isinstance(details, Mapping) else None,
    )
    codes = frozenset(str(v).lower() for v in raw if isinstance(v, str | int) and v != "")
    message = error.get("message")
    return codes, message if isinstance(message, str) else ""


def _headers_of(exc: BaseException) -> dict[str, str]:
    response = getattr(exc, "response", None)
    raw = getattr(response, "headers", None) or getattr(exc, "headers", None)
    if not isinstance(raw, Mapping):  # httpx/httpx2 Headers are Mappings
        return {}
    return {str(name).lower(): str(value) for name, value in raw.items()}


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _http_date_delay(value: str) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms`` (milliseconds), else ``retry-after`` (seconds or an HTTP date)."""
    if "retry-after-ms" in headers and (ms := _seconds(headers["retry-after-ms"])) is not None:
        return ms / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _seconds(value)
    return seconds if seconds is not None else _http_date_delay(value)


def _transient(category: ErrorCategory, headers: Mapping[str, str]) -> bool:
    flag = headers.get("x-should-retry", "").strip().lower()
    if flag in ("true", "false"):
        return flag == "true"
    return category in TRANSIENT_CATEGORIES


_TEXT_RULES = tuple(
    (re.compile(pattern), category)
    for category, pattern in {
        C.QUOTA_EXCEEDED: _QUOTA_TEXT.pattern + "|quota",
        C.CONTEXT_LENGTH: _CONTEXT_TEXT.pattern,
        C.CONTENT_FILTER: _CONTENT_TEXT.pattern,
        C.RATE_LIMIT: r"rate[ _-]?limit|too many requests",
        C.OVERLOADED: r"overloaded|over capacity",
        C.AUTH_ERROR: r"invalid[ _-]?api[ _-]?key|incorrect api key|unauthori[sz]ed"
        r"|authentication|permission denied|forbidden",
        C.MODEL_NOT_FOUND: r"\bmodel\b[^.;\n]{0,80}?(?:not found|does not exist)|model_not_found",
        C.TIMEOUT: r"timed? ?out|timeout|deadline exceeded",
        C.CONNECTION_ERROR: r"connection (?:refused|reset|aborted|error)|name resolution"
        r"|name or service not known|network is unreachable|failed to establish",
        C.SERVER_ERROR: r"internal server error|service unavailable|bad gateway",
        C.INVALID_REQUEST: r"malformed|invalid request|bad request",
    }.items()
)


# Programming errors are bugs whatever their text says ("unexpected keyword 'timeout'").
_BUG_TYPES = (TypeError, AttributeError, NameError, LookupError, AssertionError, ImportError)


def _category_by_text(text: str) -> ErrorCategory:
    for pattern, category in _TEXT_RULES:
        if pattern.search(text):
            return category
    return C.UNKNOWN


def _summary(text: str) -> str:
    """A short, single-line, redacted description."""
    flat = redact(" ".join(text[: _MAX_MESSAGE * 8].split()))
    return flat if len(flat) <= _MAX_MESSAGE else flat[: _MAX_MESSAGE - 1] + "…"


def _text(exc: BaseException) -> str:
    return str(exc)[: _MAX_MESSAGE * 8]


def _describe(exc: BaseException) -> str:
    text = _text(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _classify_http(exc: BaseException, status: int) -> Classification:
    headers = _headers_of(exc)
    codes, body_message = _error_fields(_body_of(exc))
    category = _category_for_status(status, codes, (body_message or _text(exc)).lower())
    request_id = getattr(exc, "request_id", None)
    if not isinstance(request_id, str) or not request_id:
        request_id = headers.get("x-request-id") or headers.get("request-id")
    return Classification(
        category,
        _transient(category, headers),
        retry_after_seconds=_retry_after(headers),
        status_code=status,
        request_id=request_id,
        message=_summary(body_message or _describe(exc)),
    )


def _origin(exc: BulwarkError) -> BaseException | None:
    """The first cause with HTTP details: a provider error, or one that is not Bulwark's."""
    origin = exc.cause
    for _ in range(_MAX_CAUSES):
        if not isinstance(origin, BulwarkError) or isinstance(origin, ProviderError):
            return origin
        origin = origin.cause
    return None


def _classify_bulwark(exc: BulwarkError) -> Classification:
    """A provider error carries its classification. Other Bulwark errors keep their category,
    their class says whether they are transient (raising ``TransientError`` asks for a retry),
    and HTTP details come from their cause."""
    if isinstance(exc, ProviderError):
        return exc.classification
    origin = _origin(exc)
    cause = _by_type(origin) if origin is not None else None
    transient = isinstance(exc, TransientError) or (
        not isinstance(exc, PermanentError) and exc.category in TRANSIENT_CATEGORIES
    )
    return Classification(
        exc.category,
        transient,
        retry_after_seconds=cause.retry_after_seconds if cause else None,
        status_code=cause.status_code if cause else None,
        request_id=cause.request_id if cause else None,
        message=_summary(exc.message),
    )


def _by_type(exc: BaseException) -> Classification | None:
    """Classification from the exception's type or HTTP status; None if they say nothing."""
    if isinstance(exc, asyncio.CancelledError):
        return Classification(C.CANCELLED, False, message=_summary(_describe(exc)))
    if isinstance(exc, BulwarkError):
        return _classify_bulwark(exc)
    category = _category_by_type(exc)
    if category is not None:
        transient = category in TRANSIENT_CATEGORIES
        return Classification(category, transient, message=_summary(_describe(exc)))
    status = _status_of(exc)
    return _classify_http(exc, status) if status is not None else None


def classify(exc: BaseException) -> Classification:
    """What kind of failure ``exc`` is: its category, whether retrying may help, the
    provider's Retry-After, HTTP status, request id and a short redacted message."""
    link: BaseException | None = exc
    for _ in range(_MAX_CAUSES):
        if link is None:
            break
        found = _by_type(link)
        if found is not None:
            return found
        link = link.__cause__
    bug = isinstance(exc, _BUG_TYPES)
    category = C.UNKNOWN if bug else _category_by_text(_text(exc).lower())
    return Classification(
        category, category in TRANSIENT_CATEGORIES, message=_summary(_describe(exc))
    )
