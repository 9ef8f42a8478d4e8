"""A small synchronous client of a running Bulwark service, for the CLI: submit a task, then
long-poll it until it finishes, telling a progress callback what it sees."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

#: The longest single long-poll the client asks for (the server caps it at 60 s).
POLL_SECONDS = 25.0

Progress = Callable[[Mapping[str, Any], float], None]


class ApiError(Exception):
    """The service answered with an error (``{"error": {"code", "message"}}``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status = status
        self.code = code
        self.message = message


class BulwarkClient:
    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout, read=POLL_SECONDS + timeout),
        )

    def __enter__(self) -> BulwarkClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        response = self._http.request(method, path, **options)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_error:
            error = body.get("error") if isinstance(body, dict) else None
            if isinstance(error, dict):
                raise ApiError(response.status_code, error["code"], error["message"])
            raise ApiError(response.status_code, "http_error", response.text[:200])
        if not isinstance(body, dict):
            raise ApiError(response.status_code, "bad_response", "the answer is not a JSON object")
        return body

    def submit(
        self, task_type: str, input: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call(
            "POST", "/v1/tasks", json={"type": task_type, "input": dict(input)}, headers=headers
        )

    def task(self, task_id: str, *, wait: float = 0.0) -> dict[str, Any]:
        return self._call("GET", f"/v1/tasks/{task_id}", params={"wait": wait})

    def wait(
        self, task_id: str, *, timeout: float, progress: Progress | None = None
    ) -> dict[str, Any]:
        """The task once finished, or as it is when ``timeout`` seconds have passed."""
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            left = timeout - elapsed
            task = self.task(task_id, wait=max(0.0, min(POLL_SECONDS, left)))
            elapsed = time.monotonic() - started
            if progress is not None:
                progress(task, elapsed)
            if task.get("status") in ("succeeded", "failed", "cancelled") or elapsed >= timeout:
                return task


__all__ = ["POLL_SECONDS", "ApiError", "BulwarkClient"]
