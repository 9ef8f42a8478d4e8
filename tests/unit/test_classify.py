"""classify(): real SDK, httpx/httpx2 and builtin exceptions, and the reference cases."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import ModuleType
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletion

from backend.core.errors import (
    BulwarkError,
    CircuitOpenError,
    ErrorCategory,
    PermanentError,
    ProviderError,
    TransientError,
    classify,
)

C = ErrorCategory
URL = "http://127.0.0.1/v1/chat/completions"
Factory = Callable[[], BaseException]


def _response(
    module: ModuleType, status: int, body: object = None, headers: dict[str, str] | None = None
) -> Any:
    request = module.Request("POST", URL)
    if body is None:
        return module.Response(status, headers=headers, request=request)
    return module.Response(status, headers=headers, json=body, request=request)


def oai(
    cls: type[openai.APIStatusError],
    status: int,
    *,
    code: str | None = None,
    type_: str | None = "invalid_request_error",
    message: str = "Something went wrong.",
    headers: dict[str, str] | None = None,
) -> openai.APIStatusError:
    """An OpenAI status error as the SDK builds it: ``body`` is the inner ``error`` object."""
    error = {"message": message, "type": type_, "param": None, "code": code}
    response = _response(httpx2, status, {"error": error}, headers)
    return cls(f"Error code: {status} - {message}", response=response, body=error)


def ant(
    cls: type[anthropic.APIStatusError],
    status: int,
    type_: str,
    message: str = "Something went wrong.",
    *,
    headers: dict[str, str] | None = None,
    error_code: str | None = None,
) -> anthropic.APIStatusError:
    """An Anthropic status error as the SDK builds it: ``body`` is the whole response body."""
    error: dict[str, object] = {"type": type_, "message": message}
    if error_code is not None:
        error["details"] = {"error_code": error_code}
    body = {"type": "error", "error": error}
    response = _response(httpx2, status, body, headers)
    return cls(f"Error code: {status} - {body}", response=response, body=body)


class StatusError(Exception):
    """An error of some other HTTP client: only an int ``status_code`` (and maybe more)."""

    def __init__(self, status_code: int, message: str = "", **attributes: object) -> None:
        super().__init__(message or f"HTTP {status_code}")
        self.status_code = status_code
        for name, value in attributes.items():
            setattr(self, name, value)


def _completion() -> ChatCompletion:
    return ChatCompletion.model_construct(
        id="c1", choices=[], created=0, model="gpt-4o-mini", object="chat.completion", usage=None
    )


def _check(
    exc: BaseException, category: ErrorCategory, transient: bool, status: int | None
) -> None:
    c = classify(exc)
    assert (c.category, c.transient, c.status_code) == (category, transient, status)
    assert c.category in C
    assert len(c.message) <= 300


# --- the reference system's ten cases (plus the plain ValueError)

REFERENCE = [
    pytest.param(lambda: TimeoutError(), C.TIMEOUT, True, id="TimeoutError"),
    pytest.param(lambda: StatusError(429), C.RATE_LIMIT, True, id="429"),
    pytest.param(lambda: ConnectionError(), C.CONNECTION_ERROR, True, id="ConnectionError"),
    pytest.param(lambda: StatusError(503), C.SERVER_ERROR, True, id="503"),
    pytest.param(lambda: StatusError(502), C.SERVER_ERROR, True, id="502-not-connection"),
    pytest.param(lambda: StatusError(401), C.AUTH_ERROR, False, id="401"),
    pytest.param(lambda: StatusError(404), C.MODEL_NOT_FOUND, False, id="404"),
    pytest.param(lambda: StatusError(400), C.INVALID_REQUEST, False, id="400"),
    pytest.param(lambda: Exception("invalid api key"), C.AUTH_ERROR, False, id="invalid-api-key"),
    pytest.param(lambda: Exception("malformed request"), C.INVALID_REQUEST, False, id="malformed"),
    pytest.param(lambda: ValueError("boom"), C.UNKNOWN, False, id="ValueError"),
]


@pytest.mark.parametrize(("make", "category", "transient"), REFERENCE)
def test_reference_cases(make: Factory, category: ErrorCategory, transient: bool) -> None:
    c = classify(make())
    assert (c.category, c.transient) == (category, transient)


# --- OpenAI

QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs."
)
RATE_MESSAGE = (
    "Rate limit reached for gpt-4o-mini in organization org-abc on requests per min (RPM): "
    "Limit 3, Used 3, Requested 1. Please try again in 20s. Visit "
    "https://platform.openai.com/account/billing to add a payment method."
)

OPENAI_CASES = [
    pytest.param(lambda: oai(openai.BadRequestError, 400), C.INVALID_REQUEST, False, 400, id="400"),
    pytest.param(
        lambda: oai(
            openai.BadRequestError,
            400,
            code="context_length_exceeded",
            message="This model's maximum context length is 128000 tokens.",
        ),
        C.CONTEXT_LENGTH,
        False,
        400,
        id="400-context_length_exceeded-code",
    ),
    pytest.param(
        lambda: oai(
            openai.BadRequestError,
            400,
            message="This model's maximum context length is 8192 tokens. However, your "
            "messages resulted in 9000 tokens. Please reduce the length of the messages.",
        ),
        C.CONTEXT_LENGTH,
        False,
        400,
        id="400-context-length-message-only",
    ),
    pytest.param(
        lambda: oai(openai.BadRequestError, 400, code="content_policy_violation"),
        C.CONTENT_FILTER,
        False,
        400,
        id="400-content_policy_violation",
    ),
    pytest.param(
        lambda: oai(
            openai.BadRequestError,
            400,
            message="Your request was rejected as a result of our safety system. Your prompt "
            "may contain text that violates our usage policy.",
        ),
        C.CONTENT_FILTER,
        False,
        400,
        id="400-usage-policy-message",
    ),
    pytest.param(
        lambda: oai(openai.AuthenticationError, 401, code="invalid_api_key"),
        C.AUTH_ERROR,
        False,
        401,
        id="401",
    ),
    pytest.param(
        lambda: oai(openai.PermissionDeniedError, 403, code="unsupported_country_region_territory"),
        C.AUTH_ERROR,
        False,
        403,
        id="403",
    ),
    pytest.param(
        lambda: oai(openai.NotFoundError, 404, code="model_not_found"),
        C.MODEL_NOT_FOUND,
        False,
        404,
        id="404",
    ),
    pytest.param(lambda: oai(openai.ConflictError, 409), C.SERVER_ERROR, True, 409, id="409"),
    pytest.param(
        lambda: oai(openai.UnprocessableEntityError, 422), C.INVALID_REQUEST, False, 422, id="422"
    ),
    pytest.param(
        lambda: oai(openai.RateLimitError, 429, code="rate_limit_exceeded", message=RATE_MESSAGE),
        C.RATE_LIMIT,
        True,
        429,
        id="429-rate-limit-mentioning-billing-page",
    ),
    pytest.param(
        lambda: oai(
            openai.RateLimitError,
            429,
            code="insufficient_quota",
            type_="insufficient_quota",
            message=QUOTA_MESSAGE,
        ),
        C.QUOTA_EXCEEDED,
        False,
        429,
        id="429-insufficient_quota",
    ),
    pytest.param(
        lambda: oai(openai.RateLimitError, 429, code="billing_hard_limit_reached", type_=None),
        C.QUOTA_EXCEEDED,
        False,
        429,
        id="429-billing_hard_limit_reached",
    ),
    pytest.param(
        lambda: oai(openai.RateLimitError, 429, type_=None, message=QUOTA_MESSAGE),
        C.QUOTA_EXCEEDED,
        False,
        429,
        id="429-quota-message-only",
    ),
    *(
        pytest.param(
            lambda status=status: oai(openai.InternalServerError, status, type_="server_error"),
            C.SERVER_ERROR,
            True,
            status,
            id=f"{status}",
        )
        for status in (500, 502, 503, 504)
    ),
    pytest.param(lambda: oai(openai.APIStatusError, 408), C.TIMEOUT, True, 408, id="408"),
    pytest.param(
        lambda: oai(openai.APIStatusError, 418, type_=None), C.UNKNOWN, False, 418, id="418"
    ),
    pytest.param(
        lambda: openai.APITimeoutError(request=httpx2.Request("POST", URL)),
        C.TIMEOUT,
        True,
        None,
        id="APITimeoutError",
    ),
    pytest.param(
        lambda: openai.APIConnectionError(request=httpx2.Request("POST", URL)),
        C.CONNECTION_ERROR,
        True,
        None,
        id="APIConnectionError",
    ),
    pytest.param(
        lambda: openai.LengthFinishReasonError(completion=_completion()),
        C.INVALID_OUTPUT,
        False,
        None,
        id="LengthFinishReasonError",
    ),
    pytest.param(
        lambda: openai.ContentFilterFinishReasonError(),
        C.CONTENT_FILTER,
        False,
        None,
        id="ContentFilterFinishReasonError",
    ),
]


@pytest.mark.parametrize(("make", "category", "transient", "status"), OPENAI_CASES)
def test_openai_errors(
    make: Factory, category: ErrorCategory, transient: bool, status: int | None
) -> None:
    _check(make(), category, transient, status)


# --- Anthropic

ANTHROPIC_CASES = [
    pytest.param(
        lambda: ant(
            anthropic.BadRequestError, 400, "invalid_request_error", "max_tokens: required"
        ),
        C.INVALID_REQUEST,
        False,
        400,
        id="400",
    ),
    pytest.param(
        lambda: ant(
            anthropic.BadRequestError,
            400,
            "invalid_request_error",
            "prompt is too long: 201234 tokens > 200000 maximum",
        ),
        C.CONTEXT_LENGTH,
        False,
        400,
        id="400-prompt-too-long",
    ),
    pytest.param(
        lambda: ant(
            anthropic.BadRequestError,
            400,
            "invalid_request_error",
            "input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000",
        ),
        C.CONTEXT_LENGTH,
        False,
        400,
        id="400-exceed-context-limit",
    ),
    pytest.param(
        lambda: ant(
            anthropic.BadRequestError,
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
            "Billing to upgrade or purchase credits.",
        ),
        C.QUOTA_EXCEEDED,
        False,
        400,
        id="400-credit-balance-too-low",
    ),
    pytest.param(
        lambda: ant(
            anthropic.BadRequestError,
            400,
            "invalid_request_error",
            "Output blocked by content filtering policy",
        ),
        C.CONTENT_FILTER,
        False,
        400,
        id="400-content-filtering-policy",
    ),
    pytest.param(
        lambda: ant(
            anthropic.AuthenticationError, 401, "authentication_error", "invalid x-api-key"
        ),
        C.AUTH_ERROR,
        False,
        401,
        id="401",
    ),
    pytest.param(
        lambda: ant(anthropic.PaymentRequiredError, 402, "billing_error"),
        C.QUOTA_EXCEEDED,
        False,
        402,
        id="402-billing_error",
    ),
    pytest.param(
        lambda: ant(anthropic.PermissionDeniedError, 403, "permission_error"),
        C.AUTH_ERROR,
        False,
        403,
        id="403",
    ),
    pytest.param(
        lambda: ant(anthropic.NotFoundError, 404, "not_found_error", "model: claude-9"),
        C.MODEL_NOT_FOUND,
        False,
        404,
        id="404",
    ),
    pytest.param(
        lambda: ant(anthropic.RequestTimeoutError, 408, "timeout_error"),
        C.TIMEOUT,
        True,
        408,
        id="408-RequestTimeoutError",
    ),
    pytest.param(
        lambda: ant(anthropic.ConflictError, 409, "conflict_error"),
        C.SERVER_ERROR,
        True,
        409,
        id="409",
    ),
    pytest.param(
        lambda: ant(anthropic.ContentTooLargeError, 413, "request_too_large", "Request too large"),
        C.INVALID_REQUEST,
        False,
        413,
        id="413-ContentTooLargeError",
    ),
    pytest.param(
        lambda: ant(anthropic.UnprocessableEntityError, 422, "invalid_request_error"),
        C.INVALID_REQUEST,
        False,
        422,
        id="422",
    ),
    pytest.param(
        lambda: ant(anthropic.RateLimitError, 429, "rate_limit_error", "Number of requests ..."),
        C.RATE_LIMIT,
        True,
        429,
        id="429",
    ),
    pytest.param(
        lambda: ant(
            anthropic.RampLimitExceededError,
            429,
            "rate_limit_error",
            error_code="ramp_limit_exceeded",
        ),
        C.RATE_LIMIT,
        True,
        429,
        id="429-ramp-limit",
    ),
    pytest.param(
        lambda: ant(
            anthropic.EnforcedSpendLimitReachedError,
            429,
            "rate_limit_error",
            error_code="enforced_spend_limit_reached",
        ),
        C.QUOTA_EXCEEDED,
        False,
        429,
        id="429-enforced-spend-limit",
    ),
    pytest.param(
        lambda: ant(
            anthropic.RateLimitError,
            429,
            "rate_limit_error",
            "You have reached your specified API usage limits. You will regain access on ...",
        ),
        C.QUOTA_EXCEEDED,
        False,
        429,
        id="429-usage-limits-message",
    ),
    pytest.param(
        lambda: ant(anthropic.InternalServerError, 500, "api_error", "Internal server error"),
        C.SERVER_ERROR,
        True,
        500,
        id="500",
    ),
    pytest.param(
        lambda: ant(anthropic.HTTPNotImplementedError, 501, "api_error"),
        C.SERVER_ERROR,
        True,
        501,
        id="501",
    ),
    pytest.param(
        lambda: ant(anthropic.InternalServerError, 502, "api_error"),
        C.SERVER_ERROR,
        True,
        502,
        id="502",
    ),
    pytest.param(
        lambda: ant(anthropic.ServiceUnavailableError, 503, "api_error"),
        C.SERVER_ERROR,
        True,
        503,
        id="503",
    ),
    pytest.param(
        lambda: ant(anthropic.GatewayTimeoutError, 504, "timeout_error"),
        C.SERVER_ERROR,
        True,
        504,
        id="504",
    ),
    pytest.param(
        lambda: ant(anthropic.OverloadedError, 529, "overloaded_error", "Overloaded"),
        C.OVERLOADED,
        True,
        529,
        id="529-OverloadedError",
    ),
    pytest.param(
        lambda: ant(anthropic.APIStatusError, 200, "overloaded_error", "Overloaded"),
        C.OVERLOADED,
        True,
        200,
        id="overloaded-event-in-200-stream",
    ),
    pytest.param(
        lambda: ant(anthropic.APIStatusError, 200, "api_error", "Internal server error"),
        C.SERVER_ERROR,
        True,
        200,
        id="api_error-event-in-200-stream",
    ),
    pytest.param(
        lambda: anthropic.APITimeoutError(request=httpx2.Request("POST", URL)),
        C.TIMEOUT,
        True,
        None,
        id="APITimeoutError",
    ),
    pytest.param(
        lambda: anthropic.APIConnectionError(request=httpx2.Request("POST", URL)),
        C.CONNECTION_ERROR,
        True,
        None,
        id="APIConnectionError",
    ),
]


@pytest.mark.parametrize(("make", "category", "transient", "status"), ANTHROPIC_CASES)
def test_anthropic_errors(
    make: Factory, category: ErrorCategory, transient: bool, status: int | None
) -> None:
    _check(make(), category, transient, status)


# --- headers: Retry-After, retry-after-ms, x-should-retry, request ids


def _http_date(delta: timedelta) -> str:
    return format_datetime(datetime.now(UTC) + delta, usegmt=True)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, None, id="none"),
        pytest.param({"retry-after": "7"}, 7.0, id="seconds"),
        pytest.param({"Retry-After": "1.5"}, 1.5, id="fractional-seconds"),
        pytest.param({"retry-after": "0"}, 0.0, id="zero"),
        pytest.param({"retry-after-ms": "250", "retry-after": "30"}, 0.25, id="ms-wins"),
        pytest.param({"retry-after-ms": "soon", "retry-after": "3"}, 3.0, id="bad-ms-then-s"),
        pytest.param({"retry-after": "soon"}, None, id="unparseable"),
        pytest.param({"retry-after": "-5"}, None, id="negative"),
        pytest.param({"retry-after": "nan"}, None, id="nan"),
        pytest.param({"retry-after": _http_date(-timedelta(minutes=5))}, 0.0, id="date-past"),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    for exc in (
        oai(openai.RateLimitError, 429, headers=headers),
        ant(anthropic.RateLimitError, 429, "rate_limit_error", headers=headers),
    ):
        assert classify(exc).retry_after_seconds == expected


def test_retry_after_http_date() -> None:
    exc = oai(openai.RateLimitError, 429, headers={"retry-after": _http_date(timedelta(hours=1))})
    retry_after = classify(exc).retry_after_seconds
    assert retry_after is not None
    assert 3590 <= retry_after <= 3600


@pytest.mark.parametrize(
    ("make", "category", "transient"),
    [
        pytest.param(
            lambda: oai(openai.RateLimitError, 429, headers={"x-should-retry": "false"}),
            C.RATE_LIMIT,
            False,
            id="openai-429-false",
        ),
        pytest.param(
            lambda: ant(
                anthropic.OverloadedError,
                529,
                "overloaded_error",
                headers={"x-should-retry": "false"},
            ),
            C.OVERLOADED,
            False,
            id="anthropic-529-false",
        ),
        pytest.param(
            lambda: oai(openai.BadRequestError, 400, headers={"x-should-retry": "true"}),
            C.INVALID_REQUEST,
            True,
            id="openai-400-true",
        ),
        pytest.param(
            lambda: ant(
                anthropic.AuthenticationError,
                401,
                "authentication_error",
                headers={"X-Should-Retry": "true"},
            ),
            C.AUTH_ERROR,
            True,
            id="anthropic-401-true",
        ),
        pytest.param(
            lambda: oai(openai.RateLimitError, 429, headers={"x-should-retry": "maybe"}),
            C.RATE_LIMIT,
            True,
            id="other-value-ignored",
        ),
    ],
)
def test_x_should_retry_overrides(make: Factory, category: ErrorCategory, transient: bool) -> None:
    c = classify(make())
    assert (c.category, c.transient) == (category, transient)


def test_request_ids() -> None:
    openai_exc = oai(openai.RateLimitError, 429, headers={"x-request-id": "req_openai"})
    anthropic_exc = ant(
        anthropic.RateLimitError, 429, "rate_limit_error", headers={"request-id": "req_ant"}
    )
    plain = StatusError(503, response=_response(httpx, 503, headers={"x-request-id": "req_h"}))
    assert classify(openai_exc).request_id == "req_openai"
    assert classify(anthropic_exc).request_id == "req_ant"
    assert classify(plain).request_id == "req_h"
    assert classify(oai(openai.RateLimitError, 429)).request_id is None


# --- messages


def test_message_prefers_the_body_message_and_is_redacted() -> None:
    exc = oai(
        openai.AuthenticationError,
        401,
        code="invalid_api_key",
        message="Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz0123456789.",
    )
    c = classify(exc)
    assert c.message == "Incorrect API key provided: [REDACTED]."


def test_message_is_short_and_single_line() -> None:
    c = classify(RuntimeError("line one\nline two " + "x" * 5000))
    assert c.message.startswith("RuntimeError: line one line two xxx")
    assert len(c.message) == 300
    assert c.message.endswith("…")


# --- httpx and httpx2

TRANSPORT_CASES = [
    pytest.param("ConnectTimeout", C.TIMEOUT, True, id="ConnectTimeout"),
    pytest.param("ReadTimeout", C.TIMEOUT, True, id="ReadTimeout"),
    pytest.param("WriteTimeout", C.TIMEOUT, True, id="WriteTimeout"),
    pytest.param("PoolTimeout", C.TIMEOUT, True, id="PoolTimeout"),
    pytest.param("ConnectError", C.CONNECTION_ERROR, True, id="ConnectError"),
    pytest.param("ReadError", C.CONNECTION_ERROR, True, id="ReadError"),
    pytest.param("RemoteProtocolError", C.CONNECTION_ERROR, True, id="RemoteProtocolError"),
    pytest.param("ProxyError", C.CONNECTION_ERROR, True, id="ProxyError"),
    pytest.param("LocalProtocolError", C.UNKNOWN, False, id="LocalProtocolError"),
    pytest.param("UnsupportedProtocol", C.UNKNOWN, False, id="UnsupportedProtocol"),
]


@pytest.mark.parametrize("module", [httpx, httpx2], ids=["httpx", "httpx2"])
@pytest.mark.parametrize(("name", "category", "transient"), TRANSPORT_CASES)
def test_httpx_transport_errors(
    module: ModuleType, name: str, category: ErrorCategory, transient: bool
) -> None:
    exc = getattr(module, name)("it failed", request=module.Request("GET", URL))
    _check(exc, category, transient, None)


@pytest.mark.parametrize("module", [httpx, httpx2], ids=["httpx", "httpx2"])
@pytest.mark.parametrize(
    ("status", "body", "category", "transient"),
    [
        pytest.param(429, None, C.RATE_LIMIT, True, id="429"),
        pytest.param(502, None, C.SERVER_ERROR, True, id="502"),
        pytest.param(529, None, C.OVERLOADED, True, id="529"),
        pytest.param(401, None, C.AUTH_ERROR, False, id="401"),
        pytest.param(
            400,
            {"error": {"code": "context_length_exceeded", "message": "too long"}},
            C.CONTEXT_LENGTH,
            False,
            id="400-context-length-body",
        ),
        pytest.param(
            429,
            {"error": {"type": "insufficient_quota", "message": "quota"}},
            C.QUOTA_EXCEEDED,
            False,
            id="429-quota-body",
        ),
    ],
)
def test_httpx_status_errors(
    module: ModuleType, status: int, body: object, category: ErrorCategory, transient: bool
) -> None:
    response = _response(module, status, body, {"retry-after": "2", "x-request-id": "req_1"})
    exc = module.HTTPStatusError("bad status", request=response.request, response=response)
    c = classify(exc)
    assert (c.category, c.transient, c.status_code) == (category, transient, status)
    assert (c.retry_after_seconds, c.request_id) == (2.0, "req_1")


def test_httpx_status_error_with_unread_stream_body() -> None:
    request = httpx2.Request("POST", URL)
    response = httpx2.Response(400, stream=httpx2.ByteStream(b"{}"), request=request)
    exc = httpx2.HTTPStatusError("bad status", request=request, response=response)
    _check(exc, C.INVALID_REQUEST, False, 400)


# --- builtins, cancellation, wrapping

BUILTIN_CASES = [
    pytest.param(lambda: ConnectionRefusedError(), C.CONNECTION_ERROR, True, id="refused"),
    pytest.param(lambda: ConnectionResetError(), C.CONNECTION_ERROR, True, id="reset"),
    pytest.param(lambda: BrokenPipeError(), C.CONNECTION_ERROR, True, id="broken-pipe"),
    pytest.param(
        lambda: socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        C.CONNECTION_ERROR,
        True,
        id="dns",
    ),
    pytest.param(
        lambda: OSError(errno.ENETUNREACH, "Network is unreachable"),
        C.CONNECTION_ERROR,
        True,
        id="ENETUNREACH",
    ),
    pytest.param(
        lambda: OSError(errno.ENOENT, "No such file or directory"), C.UNKNOWN, False, id="ENOENT"
    ),
    pytest.param(lambda: asyncio.CancelledError(), C.CANCELLED, False, id="CancelledError"),
    pytest.param(lambda: KeyboardInterrupt(), C.UNKNOWN, False, id="KeyboardInterrupt"),
]


@pytest.mark.parametrize(("make", "category", "transient"), BUILTIN_CASES)
def test_builtin_errors(make: Factory, category: ErrorCategory, transient: bool) -> None:
    _check(make(), category, transient, None)


def _wrapped(inner: BaseException) -> RuntimeError:
    try:
        raise RuntimeError("the call failed") from inner
    except RuntimeError as exc:
        return exc


def test_cause_chain_is_followed() -> None:
    inner = httpx2.ConnectError("refused", request=httpx2.Request("GET", URL))
    _check(_wrapped(inner), C.CONNECTION_ERROR, True, None)
    _check(_wrapped(_wrapped(StatusError(429))), C.RATE_LIMIT, True, 429)
    _check(_wrapped(ValueError("boom")), C.UNKNOWN, False, None)


# --- Bulwark's own errors


def test_bulwark_errors_keep_their_category() -> None:
    cause = oai(openai.RateLimitError, 429, headers={"retry-after": "4", "x-request-id": "r1"})
    transient = TransientError("gave up", category=C.RATE_LIMIT, attempts=4, cause=cause)
    c = classify(transient)
    assert (c.category, c.transient, c.status_code, c.retry_after_seconds, c.request_id) == (
        C.RATE_LIMIT,
        True,
        429,
        4.0,
        "r1",
    )
    assert c.message == "gave up"

    wrapped_twice = PermanentError("fallback failed", category=C.RATE_LIMIT, cause=transient)
    c = classify(wrapped_twice)
    assert (c.category, c.transient, c.status_code) == (C.RATE_LIMIT, False, 429)

    _check(PermanentError("bad key", category=C.AUTH_ERROR), C.AUTH_ERROR, False, None)
    refused = CircuitOpenError("open", breaker_key="openai:gpt-4o-mini", retry_at=None)
    _check(refused, C.CIRCUIT_OPEN, False, None)


def test_bulwark_error_class_decides_transient() -> None:
    # The reference API: code raises TransientError to ask for a retry, whatever the category.
    _check(TransientError("glitch"), C.UNKNOWN, True, None)
    _check(PermanentError("gave up", category=C.RATE_LIMIT), C.RATE_LIMIT, False, None)
    _check(BulwarkError("x", category=C.TIMEOUT), C.TIMEOUT, True, None)
    _check(BulwarkError("x", category=C.AUTH_ERROR), C.AUTH_ERROR, False, None)


def test_provider_error_keeps_its_classification() -> None:
    cause = oai(openai.BadRequestError, 400, headers={"x-should-retry": "true", "retry-after": "1"})
    wrapped = ProviderError.wrap(cause)
    assert classify(wrapped) == classify(cause) == wrapped.classification
    assert (wrapped.classification.category, wrapped.classification.transient) == (
        C.INVALID_REQUEST,
        True,
    )


def test_route_error_takes_http_details_from_a_provider_error_cause() -> None:
    sdk = ant(anthropic.RateLimitError, 429, "rate_limit_error", headers={"retry-after": "5"})
    outer = TransientError("all targets down", category=C.RATE_LIMIT, cause=ProviderError.wrap(sdk))
    c = classify(outer)
    assert (c.category, c.transient, c.status_code, c.retry_after_seconds) == (
        C.RATE_LIMIT,
        True,
        429,
        5.0,
    )


def test_bulwark_error_cause_cycle_terminates() -> None:
    a = TransientError("a", category=C.TIMEOUT)
    b = TransientError("b", category=C.TIMEOUT, cause=a)
    a.cause = b
    _check(a, C.TIMEOUT, True, None)


# --- other objects with a status


def test_object_with_status_code_response_and_body() -> None:
    response = _response(httpx2, 429, headers={"Retry-After": "9", "X-Should-Retry": "false"})
    exc = StatusError(
        429,
        response=response,
        body={"error": {"code": "rate_limit_exceeded", "message": "slow down"}},
    )
    c = classify(exc)
    assert (c.category, c.transient, c.status_code) == (C.RATE_LIMIT, False, 429)
    assert (c.retry_after_seconds, c.message) == (9.0, "slow down")


class AiohttpLikeError(Exception):
    def __init__(self, status: object, headers: dict[str, str]) -> None:
        super().__init__("response error")
        self.status = status
        self.headers = headers


def test_object_with_status_and_plain_headers() -> None:
    c = classify(AiohttpLikeError(503, {"Retry-After": "12"}))
    assert (c.category, c.transient, c.status_code, c.retry_after_seconds) == (
        C.SERVER_ERROR,
        True,
        503,
        12.0,
    )


@pytest.mark.parametrize(
    "status", [True, "429", 42, None], ids=["bool", "str", "out-of-range", "none"]
)
def test_status_attributes_that_are_not_http_statuses_are_ignored(status: object) -> None:
    _check(AiohttpLikeError(status, {}), C.UNKNOWN, False, None)


# --- message text, the last resort


@pytest.mark.parametrize(
    ("text", "category", "transient"),
    [
        pytest.param("rate limit exceeded", C.RATE_LIMIT, True, id="rate-limit"),
        pytest.param("429 Too Many Requests", C.RATE_LIMIT, True, id="too-many-requests"),
        pytest.param("the request timed out", C.TIMEOUT, True, id="timed-out"),
        pytest.param("read timeout", C.TIMEOUT, True, id="timeout"),
        pytest.param("connection refused by peer", C.CONNECTION_ERROR, True, id="refused"),
        pytest.param("Invalid API key", C.AUTH_ERROR, False, id="invalid-api-key"),
        pytest.param("model not found: gpt-9", C.MODEL_NOT_FOUND, False, id="model-not-found"),
        pytest.param("The model `gpt-9` does not exist", C.MODEL_NOT_FOUND, False, id="no-model"),
        pytest.param("malformed JSON in request", C.INVALID_REQUEST, False, id="malformed"),
        pytest.param("server is overloaded", C.OVERLOADED, True, id="overloaded"),
        pytest.param("quota exceeded for this project", C.QUOTA_EXCEEDED, False, id="quota"),
        pytest.param("prompt is too long", C.CONTEXT_LENGTH, False, id="context"),
        pytest.param("503 Service Unavailable", C.SERVER_ERROR, True, id="service-unavailable"),
        pytest.param("something odd happened", C.UNKNOWN, False, id="nothing"),
        pytest.param("", C.UNKNOWN, False, id="empty"),
    ],
)
def test_message_fallbacks(text: str, category: ErrorCategory, transient: bool) -> None:
    _check(Exception(text), category, transient, None)


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(TypeError("create() got an unexpected keyword argument 'timeout'"), id="type"),
        pytest.param(KeyError("rate_limit"), id="key"),
        pytest.param(AttributeError("'NoneType' has no attribute 'timeout'"), id="attribute"),
    ],
)
def test_programming_errors_are_not_read_as_text(exc: BaseException) -> None:
    _check(exc, C.UNKNOWN, False, None)


def test_type_beats_message_text() -> None:
    # The text says "rate limit", the type says connection error: the type wins.
    exc = httpx2.ConnectError("rate limit proxy down", request=httpx2.Request("GET", URL))
    assert classify(exc).category == C.CONNECTION_ERROR
    assert classify(StatusError(401, "rate limit")).category == C.AUTH_ERROR
