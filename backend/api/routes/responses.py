"""OpenAPI descriptions of the error answers routes share."""

from __future__ import annotations

from typing import Any

from backend.api.schemas import ErrorResponse


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that may answer with these error statuses."""
    text = {
        401: "No API key, or an unknown one (`WWW-Authenticate: Bearer`)",
        403: "A client key on an admin route",
        404: "No such resource (another client's task is not found either)",
        409: "Conflict (idempotency key reused with another body; task not cancellable)",
        413: "Request body over the size limit",
        422: "Malformed JSON (`invalid_json`), unknown task type (`unknown_task_type`) or "
        "invalid fields (`validation_error`)",
        429: "Too many queued tasks (`Retry-After`)",
        503: "Database unavailable (`Retry-After`)",
    }
    return {s: {"model": ErrorResponse, "description": text[s]} for s in statuses}


__all__ = ["errors"]
