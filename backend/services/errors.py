"""The errors services raise, in domain words. ``backend.api.errors`` maps each to one HTTP
answer; nothing here knows HTTP. Every error has a stable ``code`` clients can rely on.

::

    ServiceError (code)
    ├── NotFoundError                 not_found: no such task or breaker (or not yours)
    ├── UnauthorizedError             unauthorized: no credentials, or unknown ones
    ├── ForbiddenError                forbidden: valid credentials, not enough rights
    ├── InvalidRequestError           validation_error: a field is wrong (``errors``)
    │   └── UnknownTaskTypeError      unknown_task_type: no agent serves it (``known``)
    ├── PayloadTooLargeError          payload_too_large: over the size limit (``limit``)
    ├── ConflictError                 idempotency_conflict / not_cancellable
    └── RetryLaterError               has ``retry_after`` (seconds)
        ├── TooManyQueuedError        too_many_queued: the client's queue is full
        └── DatabaseUnavailableError  database_unavailable
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class ServiceError(Exception):
    """Base of every error a service raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(ServiceError):
    code = "not_found"


class UnauthorizedError(ServiceError):
    code = "unauthorized"


class ForbiddenError(ServiceError):
    code = "forbidden"


class InvalidRequestError(ServiceError):
    """``errors`` holds ``(field path, message)`` pairs, e.g. ``("input.code", "Field
    required")``; the message lists them."""

    code = "validation_error"

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{field}: {msg}" if field else msg for field, msg in errors))


class UnknownTaskTypeError(InvalidRequestError):
    code = "unknown_task_type"

    def __init__(self, task_type: object, known: Iterable[str]) -> None:
        self.task_type = task_type
        self.known = sorted(known)
        shown = repr(task_type[:40]) if isinstance(task_type, str) else "missing"
        super().__init__(
            [("type", f"unknown task type {shown}; valid types: {', '.join(self.known)}")]
        )


class PayloadTooLargeError(ServiceError):
    code = "payload_too_large"

    def __init__(self, size: int | None, limit: int) -> None:
        self.size = size
        self.limit = limit
        got = f" ({size} bytes)" if size is not None else ""
        super().__init__(f"the request body is too large{got}; the limit is {limit} bytes")


class ConflictError(ServiceError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RetryLaterError(ServiceError):
    """Worth retrying after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyQueuedError(RetryLaterError):
    code = "too_many_queued"


class DatabaseUnavailableError(RetryLaterError):
    code = "database_unavailable"


__all__ = [
    "ConflictError",
    "DatabaseUnavailableError",
    "ForbiddenError",
    "InvalidRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RetryLaterError",
    "ServiceError",
    "TooManyQueuedError",
    "UnauthorizedError",
    "UnknownTaskTypeError",
]
