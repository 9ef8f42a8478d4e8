"""The rules of the service, shared by the REST API and the CLI: tasks, call history,
breaker operations, API keys and health. Nothing here knows HTTP.

Names are imported lazily from their modules, so that importing one light module (the
renderer, the errors) does not load every service."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.services.breakers import BreakerDetail, BreakerService
    from backend.services.errors import (
        ConflictError,
        DatabaseUnavailableError,
        ForbiddenError,
        InvalidRequestError,
        NotFoundError,
        PayloadTooLargeError,
        RetryLaterError,
        ServiceError,
        TooManyQueuedError,
        UnauthorizedError,
        UnknownTaskTypeError,
    )
    from backend.services.health import HealthService
    from backend.services.history import CallFilter, CallPage, CallView, HistoryService
    from backend.services.keys import KeyService, LocalAdminKey, Principal
    from backend.services.stats import Stats, StatsService
    from backend.services.tasks import TaskRules, TaskService

_MODULES = {
    "breakers": ("BreakerDetail", "BreakerService"),
    "errors": (
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
    ),
    "health": ("HealthService",),
    "history": ("CallFilter", "CallPage", "CallView", "HistoryService"),
    "stats": ("Stats", "StatsService"),
    "keys": ("KeyService", "LocalAdminKey", "Principal"),
    "tasks": ("TaskRules", "TaskService"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "BreakerDetail",
    "BreakerService",
    "CallFilter",
    "CallPage",
    "CallView",
    "ConflictError",
    "DatabaseUnavailableError",
    "ForbiddenError",
    "HealthService",
    "HistoryService",
    "InvalidRequestError",
    "KeyService",
    "LocalAdminKey",
    "NotFoundError",
    "PayloadTooLargeError",
    "Principal",
    "RetryLaterError",
    "ServiceError",
    "Stats",
    "StatsService",
    "TaskRules",
    "TaskService",
    "TooManyQueuedError",
    "UnauthorizedError",
    "UnknownTaskTypeError",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"backend.services.{module}"), name)
