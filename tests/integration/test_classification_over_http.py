"""Every error category of the design's table, reached over HTTP: the real OpenAI and Anthropic
SDKs (their own retries off) against the fake provider server, their exceptions wrapped by
the adapters and classified; ``circuit_open`` and ``invalid_output`` through the gateway."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anthropic
import httpx2
import openai
import pytest
from pydantic import BaseModel

from backend.core.errors import (
    TRANSIENT_CATEGORIES,
    AllTargetsUnavailableError,
    CircuitOpenError,
    ErrorCategory,
    PermanentError,
    ProviderError,
    classify,
)
from backend.llm.gateway import LLMGateway
from backend.llm.providers.anthropic_provider import AnthropicProvider
from backend.llm.providers.base import Provider
from backend.llm.providers.openai_provider import OpenAIProvider
from backend.llm.types import ChatMessage, ProviderRequest
from tests.fakes.behaviours import (
    Behaviour,
    auth_error,
    bad_request,
    content_filter,
    context_length,
    drop,
    error,
    garbage,
    hang,
    model_not_found,
    overloaded,
    quota_exceeded,
    rate_limit,
    reply,
    reply_json,
    server_error,
)
from tests.fakes.provider_server import FakeProviderServer
from tests.integration.gateway_helpers import ANTHROPIC, OPENAI, gateway_settings

C = ErrorCategory
SDK_ERRORS = (openai.OpenAIError, anthropic.AnthropicError, httpx2.HTTPError)


@dataclass(frozen=True)
class Case:
    id: str
    behaviour: Behaviour
    category: ErrorCategory
    status: int | None
    retry_after: float | None = None
    transient: bool | None = None  # None: as the category says
    cause: tuple[type[BaseException], ...] | None = SDK_ERRORS  # None: raised by the adapter


CASES = [
    Case("timeout-hang", hang(), C.TIMEOUT, None),
    Case("rate_limit-429", rate_limit(retry_after=2), C.RATE_LIMIT, 429, retry_after=2),
    Case("rate_limit-429-ms", rate_limit(retry_after_ms=250), C.RATE_LIMIT, 429, retry_after=0.25),
    Case("quota_exceeded-429", quota_exceeded(), C.QUOTA_EXCEEDED, 429),
    Case("overloaded-529", overloaded(), C.OVERLOADED, 529),
    Case("connection_error-drop", drop(), C.CONNECTION_ERROR, None),
    Case("connection_error-reset", drop(reset=True), C.CONNECTION_ERROR, None),
    *(Case(f"server_error-{s}", server_error(s), C.SERVER_ERROR, s) for s in (500, 502, 503, 504)),
    Case(
        "server_error-503-x-should-retry-false",
        server_error(503, should_retry=False),
        C.SERVER_ERROR,
        503,
        transient=False,
    ),
    Case("auth_error-401", auth_error(), C.AUTH_ERROR, 401),
    Case("auth_error-403", error(403, message="Forbidden"), C.AUTH_ERROR, 403),
    Case("invalid_request-400", bad_request("temperature too high"), C.INVALID_REQUEST, 400),
    Case("invalid_request-413", error(413), C.INVALID_REQUEST, 413),
    Case("invalid_request-422", error(422), C.INVALID_REQUEST, 422),
    Case("context_length-400", context_length(), C.CONTEXT_LENGTH, 400),
    Case("content_filter-400", content_filter(), C.CONTENT_FILTER, 400),
    Case(
        "content_filter-200-stopped",
        reply("partial", finish="content_filter"),
        C.CONTENT_FILTER,
        None,
        cause=None,
    ),
    Case("model_not_found-404", model_not_found(), C.MODEL_NOT_FOUND, 404),
    Case(
        "unknown-418",
        error(418, message="I'm a teapot", type="teapot", anthropic_type="teapot_error"),
        C.UNKNOWN,
        418,
    ),
    Case("unknown-200-not-json", garbage(), C.UNKNOWN, None, cause=(json.JSONDecodeError,)),
]

ADAPTERS: dict[str, type[OpenAIProvider] | type[AnthropicProvider]] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
}


@pytest.fixture(params=sorted(ADAPTERS))
async def adapter(
    request: pytest.FixtureRequest, provider_server: FakeProviderServer
) -> AsyncIterator[Provider]:
    name: str = request.param
    base_url = (
        provider_server.openai_base_url if name == "openai" else provider_server.anthropic_base_url
    )
    provider: OpenAIProvider | AnthropicProvider = ADAPTERS[name](
        api_key="sk-test-key-0000", base_url=base_url
    )
    try:
        yield provider
    finally:
        await provider.aclose()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_sdk_exception_is_classified(
    adapter: Provider, provider_server: FakeProviderServer, case: Case
) -> None:
    provider_server.set_default(case.behaviour)
    request = ProviderRequest(model="some-model", messages=[ChatMessage("user", "hi")], timeout=0.3)

    with pytest.raises(ProviderError) as caught:
        await adapter.complete(request)

    found = caught.value.classification
    transient = case.category in TRANSIENT_CATEGORIES if case.transient is None else case.transient
    assert (found.category, found.transient, found.status_code) == (
        case.category,
        transient,
        case.status,
    )
    assert found.retry_after_seconds == case.retry_after
    assert classify(caught.value) == found  # the retry predicate and the breaker agree
    if case.cause is None:
        assert caught.value.__cause__ is None
    else:
        assert isinstance(caught.value.__cause__, case.cause)
    assert provider_server.request_count == 1  # the SDK's own retries are off


# --- categories only the gateway produces -----------------------------------------------------


class Verdict(BaseModel):
    approved: bool
    reason: str


@pytest.fixture
async def gateway(
    provider_server: FakeProviderServer, sqlite_url: str
) -> AsyncIterator[LLMGateway]:
    settings = gateway_settings(
        provider_server,
        sqlite_url,
        {"openai": [OPENAI], "anthropic": [ANTHROPIC]},
        retry_max_retries=0,
    )
    created = await LLMGateway.create(settings, migrate=True)
    try:
        yield created
    finally:
        await created.aclose()


@pytest.mark.parametrize("route", ["openai", "anthropic"])
async def test_circuit_open_from_a_forced_open_breaker(
    gateway: LLMGateway, provider_server: FakeProviderServer, route: str
) -> None:
    target = gateway.routes.targets(route)[0]
    await gateway.breakers.get(target.key).force_open(actor="test")

    with pytest.raises(AllTargetsUnavailableError) as caught:
        await gateway.complete([{"role": "user", "content": "hi"}], route=route)

    # The refusal fails fast (not retried: permanent for this call) and moves the route on;
    # with no target left, the route's error says "try again later" and names it as cause.
    refusal = caught.value.cause
    assert isinstance(refusal, CircuitOpenError)
    assert (refusal.breaker_key, refusal.retry_at) == (target.key, None)
    found = classify(refusal)
    assert (found.category, found.transient, found.status_code) == (C.CIRCUIT_OPEN, False, None)
    assert caught.value.category is C.CIRCUIT_OPEN
    assert provider_server.request_count == 0


@pytest.mark.parametrize("route", ["openai", "anthropic"])
async def test_invalid_output_after_the_repair_request(
    gateway: LLMGateway, provider_server: FakeProviderServer, route: str
) -> None:
    provider_server.script(reply_json({"approved": "maybe"}), reply("still not JSON"))

    with pytest.raises(PermanentError) as caught:
        await gateway.complete([{"role": "user", "content": "ok?"}], route=route, schema=Verdict)

    found = classify(caught.value)
    assert (found.category, found.transient, found.status_code) == (C.INVALID_OUTPUT, False, None)
    assert provider_server.request_count == 2  # the answer, then the one repair request
