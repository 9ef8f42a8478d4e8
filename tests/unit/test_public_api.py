"""The public surface promised by design.md ("Python API", "Error categories"): the names users
import, the values stored in the database, and the exported names of ``backend.core.errors``.
A change here is a change of contract: update design.md and docs/ with it."""

from __future__ import annotations

import inspect

import backend
from backend.core import errors


def test_the_design_python_api_imports() -> None:
    from agents.base import AgentContext, BaseAgent
    from backend.config import Settings
    from backend.core.circuit_breaker import CircuitBreaker
    from backend.core.error_recovery import ErrorRecoveryManager, RecoveryConfig
    from backend.core.errors import (
        CircuitOpenError,
        ErrorCategory,
        PermanentError,
        TransientError,
        classify,
    )
    from backend.llm.gateway import LLMGateway

    for name in (
        AgentContext,
        BaseAgent,
        Settings,
        CircuitBreaker,
        ErrorRecoveryManager,
        RecoveryConfig,
        CircuitOpenError,
        ErrorCategory,
        PermanentError,
        TransientError,
        classify,
        LLMGateway,
    ):
        assert name is not None


def test_the_agents_package_exports_what_agent_developers_need() -> None:
    import agents
    from agents.context import AgentContext

    assert {"BaseAgent", "AgentContext"} <= set(agents.__all__)
    assert agents.AgentContext is AgentContext


#: design.md, "Error categories", in table order, plus ``cancelled`` (the caller's own
#: cancellation or deadline, which never counts against a provider).
DESIGN_CATEGORIES = [
    "timeout",
    "rate_limit",
    "quota_exceeded",
    "overloaded",
    "connection_error",
    "server_error",
    "auth_error",
    "invalid_request",
    "context_length",
    "content_filter",
    "model_not_found",
    "circuit_open",
    "invalid_output",
    "unknown",
]


def test_error_category_values_equal_the_design_table() -> None:
    assert sorted(c.value for c in errors.ErrorCategory) == sorted(
        [*DESIGN_CATEGORIES, "cancelled"]
    )
    # Stored as strings: members compare equal to their values.
    assert errors.ErrorCategory("rate_limit") == "rate_limit"


def test_transient_categories_are_the_design_table_yes_rows() -> None:
    assert {c.value for c in errors.TRANSIENT_CATEGORIES} == {
        "timeout",
        "rate_limit",
        "overloaded",
        "connection_error",
        "server_error",
    }
    assert set(errors.ADVICE) == set(errors.ErrorCategory)


def test_errors_all_is_pinned() -> None:
    assert sorted(errors.__all__) == [
        "ADVICE",
        "AllTargetsFailedError",
        "AllTargetsUnavailableError",
        "BulwarkError",
        "CircuitOpenError",
        "Classification",
        "ErrorCategory",
        "PermanentError",
        "ProviderError",
        "TRANSIENT_CATEGORIES",
        "TargetFailure",
        "TransientError",
        "classify",
        "describe",
    ]
    for name in errors.__all__:
        assert hasattr(errors, name), name


def test_backend_all_is_pinned() -> None:
    assert backend.__all__ == ["__version__"]


def test_error_hierarchy() -> None:
    assert issubclass(errors.CircuitOpenError, errors.PermanentError)
    assert issubclass(errors.PermanentError, errors.BulwarkError)
    assert issubclass(errors.TransientError, errors.BulwarkError)
    assert issubclass(errors.AllTargetsUnavailableError, errors.TransientError)
    assert issubclass(errors.AllTargetsFailedError, errors.PermanentError)
    assert not issubclass(errors.TransientError, errors.PermanentError)


def test_errors_carry_category_attempts_and_message() -> None:
    error = errors.TransientError(
        "call failed", category=errors.ErrorCategory.RATE_LIMIT, attempts=4
    )
    assert (error.category, error.attempts, error.message) == ("rate_limit", 4, "call failed")
    refused = errors.CircuitOpenError("open", breaker_key="openai:gpt-4o-mini", retry_at=None)
    assert refused.category is errors.ErrorCategory.CIRCUIT_OPEN
    assert (refused.attempts, refused.message, refused.breaker_key) == (
        0,
        "open",
        "openai:gpt-4o-mini",
    )


def test_classify_answers_category_transient_and_retry_after() -> None:
    c = errors.classify(TimeoutError("read timed out"))
    assert c.category is errors.ErrorCategory.TIMEOUT
    assert c.transient is True
    assert c.retry_after_seconds is None


async def test_circuit_breaker_takes_its_knobs_as_keywords() -> None:
    from backend.core.breaker_state import BreakerState
    from backend.core.circuit_breaker import CircuitBreaker

    breaker = CircuitBreaker(
        "openai:gpt-4o-mini", threshold=3, open_seconds=10, half_open_max_calls=2
    )
    assert breaker.key == "openai:gpt-4o-mini"
    assert (breaker.config.threshold, breaker.config.open_seconds) == (3, 10)
    assert breaker.config.half_open_max_calls == 2
    # In memory unless store= is given: works with no database at all.
    await breaker.force_open(actor="test")
    assert (await breaker.snapshot()).state is BreakerState.OPEN


def test_manager_entry_points_take_the_design_keywords() -> None:
    from backend.core.error_recovery import ErrorRecoveryManager, RecoveryConfig

    manager = ErrorRecoveryManager(RecoveryConfig(max_retries=3))
    assert inspect.iscoroutinefunction(manager.execute_with_retry)
    assert not inspect.iscoroutinefunction(manager.execute_with_retry_sync)
    for method in (manager.execute_with_retry, manager.execute_with_retry_sync):
        parameters = inspect.signature(method).parameters
        assert {"context", "timeout_seconds", "breaker", "deadline", "listeners"} <= set(parameters)


def test_gateway_entry_points() -> None:
    from backend.llm.gateway import LLMGateway

    assert inspect.iscoroutinefunction(LLMGateway.create)
    assert inspect.iscoroutinefunction(LLMGateway.complete)
    assert inspect.iscoroutinefunction(LLMGateway.aclose)
    parameters = inspect.signature(LLMGateway.complete).parameters
    assert {"messages", "route", "agent"} <= set(parameters)
