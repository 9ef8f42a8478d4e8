"""Bulwark's error vocabulary: categories, the classification of any exception, and the errors
the resilience layer raises.

Hierarchy::

    BulwarkError
    ├── ProviderError                  one failed request, raised by a provider adapter with
    │                                  its Classification: past the adapter, no SDK types
    ├── TransientError                 retries exhausted (or refused) on a failure that may pass
    │   └── AllTargetsUnavailableError every target of a route failed, one of them transiently
    └── PermanentError                 retrying cannot help: auth, bad request, quota, ...
        ├── CircuitOpenError           the target's breaker refused the call without sending it
        └── AllTargetsFailedError      every target of a route failed permanently

The two route errors list each target's failure, in order, in ``failures``.

Every error carries ``category`` (an :class:`ErrorCategory`), ``attempts`` (requests made),
``message`` (what failed, why, and what to do; never a secret) and ``cause`` (the original
exception, when there is one). ``classify(exc)`` lives in :mod:`backend.core.classify` and is
re-exported here, so the retry predicate and the breaker share one answer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class ErrorCategory(enum.StrEnum):
    """What went wrong, in the words an operator uses; values are stored in the database."""

    TIMEOUT = "timeout"
    RATE_LIMIT = "rate_limit"
    QUOTA_EXCEEDED = "quota_exceeded"
    OVERLOADED = "overloaded"
    CONNECTION_ERROR = "connection_error"
    SERVER_ERROR = "server_error"
    AUTH_ERROR = "auth_error"
    INVALID_REQUEST = "invalid_request"
    CONTEXT_LENGTH = "context_length"
    CONTENT_FILTER = "content_filter"
    MODEL_NOT_FOUND = "model_not_found"
    CIRCUIT_OPEN = "circuit_open"
    INVALID_OUTPUT = "invalid_output"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


#: Categories that may succeed if the same request is sent again later.
TRANSIENT_CATEGORIES: frozenset[ErrorCategory] = frozenset(
    {
        ErrorCategory.TIMEOUT,
        ErrorCategory.RATE_LIMIT,
        ErrorCategory.OVERLOADED,
        ErrorCategory.CONNECTION_ERROR,
        ErrorCategory.SERVER_ERROR,
    }
)

#: Short advice per category, appended to error messages.
ADVICE: dict[ErrorCategory, str] = {
    ErrorCategory.TIMEOUT: "the provider did not answer in time; raise the timeout or try later",
    ErrorCategory.RATE_LIMIT: "the provider is rate limiting; slow down or add a fallback target",
    ErrorCategory.QUOTA_EXCEEDED: "the account's quota or spend cap is exhausted; raise it or "
    "route to another provider",
    ErrorCategory.OVERLOADED: "the provider is overloaded; try later or add a fallback target",
    ErrorCategory.CONNECTION_ERROR: "the provider could not be reached; check the base URL and "
    "the network",
    ErrorCategory.SERVER_ERROR: "the provider failed on its side; try later",
    ErrorCategory.AUTH_ERROR: "the API key was refused; check the key and its permissions",
    ErrorCategory.INVALID_REQUEST: "the provider rejected the request; check its parameters",
    ErrorCategory.CONTEXT_LENGTH: "the prompt does not fit the model's context window; shorten "
    "it or route to a larger model",
    ErrorCategory.CONTENT_FILTER: "the provider refused the content under its policy",
    ErrorCategory.MODEL_NOT_FOUND: "the model name is unknown to the provider; check the route",
    ErrorCategory.CIRCUIT_OPEN: "the target is failing and its breaker is open; calls resume "
    "after the open time, or an operator can reset it",
    ErrorCategory.INVALID_OUTPUT: "the model did not answer in the requested format",
    ErrorCategory.CANCELLED: "the caller cancelled the call or its deadline passed",
    ErrorCategory.UNKNOWN: "an unexpected error; this is likely a bug and is not retried",
}


@dataclass(frozen=True, slots=True)
class Classification:
    """The one answer to "what kind of failure is this?" shared by retries and breakers.

    ``retry_after_seconds`` is the provider's own hint (``Retry-After``/``retry-after-ms``);
    ``message`` is a short redacted description safe to store and show.
    """

    category: ErrorCategory
    transient: bool
    retry_after_seconds: float | None = None
    status_code: int | None = None
    request_id: str | None = None
    message: str = ""

    @property
    def retry_after(self) -> float | None:
        """The provider's Retry-After in seconds (alias of ``retry_after_seconds``)."""
        return self.retry_after_seconds


class BulwarkError(Exception):
    """Base of every error Bulwark raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        category: ErrorCategory = ErrorCategory.UNKNOWN,
        attempts: int = 0,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.category = category
        self.attempts = attempts
        self.cause = cause

    def __str__(self) -> str:
        return self.message


class TransientError(BulwarkError):
    """A failure that may pass: retries were exhausted, the budget or deadline ran out."""


class PermanentError(BulwarkError):
    """A failure that retrying cannot fix; raised after the first attempt that shows it."""


class CircuitOpenError(PermanentError):
    """The target's breaker is open: the call was refused without reaching the provider.

    ``retry_at`` is the wall-clock time at which the breaker lets a probe through (``None``
    when an operator forced it open until reset).
    """

    def __init__(
        self,
        message: str,
        *,
        breaker_key: str,
        retry_at: datetime | None,
        attempts: int = 0,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(
            message, category=ErrorCategory.CIRCUIT_OPEN, attempts=attempts, cause=cause
        )
        self.breaker_key = breaker_key
        self.retry_at = retry_at


class ProviderError(BulwarkError):
    """One request to a provider failed. Adapters raise it from the SDK's exception."""

    def __init__(self, classification: Classification, *, cause: BaseException | None = None):
        super().__init__(
            classification.message or classification.category.value,
            category=classification.category,
            attempts=1,
            cause=cause,
        )
        self.classification = classification

    @classmethod
    def wrap(cls, exc: BaseException) -> ProviderError:
        return cls(classify(exc), cause=exc)


@dataclass(frozen=True, slots=True)
class TargetFailure:
    target: str
    category: ErrorCategory
    message: str


class _RouteFailure(BulwarkError):
    """What the two route errors share: the route and each target's failure, in order."""

    def __init__(
        self,
        route: str,
        failures: list[TargetFailure],
        *,
        attempts: int,
        cause: BaseException | None = None,
    ) -> None:
        tried = "; ".join(f"{f.target}: {f.category.value} ({f.message})" for f in failures)
        super().__init__(
            f"Every target of route {route!r} failed. {tried}",
            category=failures[-1].category if failures else ErrorCategory.UNKNOWN,
            attempts=attempts,
            cause=cause,
        )
        self.route = route
        self.failures = failures


class AllTargetsUnavailableError(_RouteFailure, TransientError):
    """Every target of a route failed, and at least one for a reason that may pass (outage,
    rate limit, open breaker): trying again later may succeed."""


class AllTargetsFailedError(_RouteFailure, PermanentError):
    """Every target of a route failed for reasons that retrying will not fix (keys refused,
    quota exhausted, model unknown, prompt too long for every model)."""


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def describe(what: str, classification: Classification, attempts: int) -> str:
    """A one-line message: what failed, why, after how many attempts, and what to do."""
    why = classification.category.value
    if classification.status_code is not None:
        why += f" (HTTP {classification.status_code})"
    detail = f": {classification.message}" if classification.message else ""
    plural = "s" if attempts != 1 else ""
    return (
        f"{what} failed with {why} after {attempts} attempt{plural}{detail}. "
        f"{_sentence(ADVICE[classification.category])}."
    )


from backend.core.classify import classify  # noqa: E402  (re-export; classify needs the types above)

__all__ = [
    "ADVICE",
    "TRANSIENT_CATEGORIES",
    "AllTargetsFailedError",
    "AllTargetsUnavailableError",
    "BulwarkError",
    "CircuitOpenError",
    "Classification",
    "ErrorCategory",
    "PermanentError",
    "ProviderError",
    "TargetFailure",
    "TransientError",
    "classify",
    "describe",
]
