"""Bulwark's logs: one line per record, JSON (``BULWARK_LOG_FORMAT=json``) or text, with the
request, task, call and agent a line concerns, and never a secret.

* **Context.** ``request_id``, ``task_id``, ``call_id`` and ``agent`` live in a context
  variable: the API binds the request (:class:`RequestContextMiddleware`), the worker a task,
  the gateway a call (``with bind_log_context(task_id=..., agent=...):``). Every record made
  inside carries them, including records of tasks spawned there (asyncio copies the context).
  A record's own ``extra={"task_id": ...}`` wins over the bound value.
* **Redaction.** :func:`configure_logging` installs a log record factory, so **every**
  record, whatever handler later sees it, has its message (args merged in), exception text
  and stack redacted with :func:`backend.core.redact.redact`; the formatters redact again
  what they print (extra fields included).
* **Expected errors.** A record whose exception is a domain error (a ``BulwarkError`` of a
  known category, or a type given in ``expected_errors``) prints one summary line, not a
  traceback: the traceback of an expected failure is noise. Bugs keep theirs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.config import Settings
from backend.core.errors import BulwarkError, ErrorCategory
from backend.core.redact import redact

LOG_CONTEXT_FIELDS = ("request_id", "task_id", "call_id", "agent")
CONTEXT_ATTR = "bulwark_context"
"""The record attribute holding the context bound when the record was made."""
ERROR_ATTR = "bulwark_error"
"""The record attribute summarising an expected error (``type``, ``category``, ``message``)."""

_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("bulwark_log_context", default=_EMPTY)
_STANDARD = frozenset(
    {*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime", "taskName"}
)
_OURS = "_bulwark_handler"
_NOISY = ("httpx", "httpcore")
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


def set_log_context(**fields: str | None) -> Token[Mapping[str, str]]:
    """Bind ``fields`` until :func:`reset_log_context` with the token. A ``None`` value leaves
    that field as it was, so callers can pass optional values (``agent=agent``) as they are."""
    unknown = sorted(set(fields) - set(LOG_CONTEXT_FIELDS))
    if unknown:
        raise TypeError(f"unknown log context fields {unknown}; known: {LOG_CONTEXT_FIELDS}")
    given = {name: str(value) for name, value in fields.items() if value is not None}
    return _context.set(MappingProxyType({**_context.get(), **given}))


def reset_log_context(token: Token[Mapping[str, str]]) -> None:
    _context.reset(token)


@contextmanager
def bind_log_context(**fields: str | None) -> Iterator[None]:
    """Bind ``fields`` to every record logged inside the block (then restore the old ones)."""
    token = set_log_context(**fields)
    try:
        yield
    finally:
        reset_log_context(token)


def log_context() -> dict[str, str]:
    """The fields bound now."""
    return dict(_context.get())


def _expected(exc: BaseException, expected: tuple[type[BaseException], ...]) -> bool:
    if isinstance(exc, BulwarkError):
        return exc.category is not ErrorCategory.UNKNOWN
    return isinstance(exc, expected)


def prepare_record(
    record: logging.LogRecord, expected: tuple[type[BaseException], ...] = ()
) -> logging.LogRecord:
    """Attach the bound context to ``record`` and redact it in place (see the module doc)."""
    setattr(record, CONTEXT_ATTR, dict(_context.get()))
    try:
        message = record.getMessage()
    except Exception:  # a bad format string must not lose the line (nor its secrets' safety)
        message = f"{record.msg!s} {record.args!r}"
    record.msg, record.args = redact(message), ()
    exc = record.exc_info[1] if record.exc_info else None
    if exc is not None and _expected(exc, expected):
        category = getattr(exc, "category", None) or getattr(exc, "code", None)
        summary = {"type": type(exc).__name__, "category": str(category or "error")}
        summary["message"] = redact(str(getattr(exc, "message", None) or exc))
        setattr(record, ERROR_ATTR, summary)
        record.exc_text = None
    elif exc is not None and record.exc_info is not None:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = redact(text)
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    record.exc_info = None  # formatters print the redacted exc_text, never the live exception
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class _RecordFactory:
    """Wraps the previous log record factory with :func:`prepare_record`."""

    def __init__(
        self, previous: Callable[..., logging.LogRecord], expected: tuple[type[BaseException], ...]
    ) -> None:
        self.previous = previous
        self.expected = expected

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        return prepare_record(self.previous(*args, **kwargs), self.expected)


def _fields(record: logging.LogRecord) -> dict[str, str]:
    fields: dict[str, str] = dict(getattr(record, CONTEXT_ATTR, {}))
    for name in LOG_CONTEXT_FIELDS:
        value = record.__dict__.get(name)
        if value is not None:
            fields[name] = str(value)
    return {name: fields[name] for name in LOG_CONTEXT_FIELDS if name in fields}


def _ensure_prepared(record: logging.LogRecord) -> None:
    """A record made without the factory is prepared when formatted."""
    if not hasattr(record, CONTEXT_ATTR):
        prepare_record(record)


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger> [request_id=.. task_id=..] <message> (<error summary>)``."""

    def format(self, record: logging.LogRecord) -> str:
        _ensure_prepared(record)
        context = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{_time(record)} {record.levelname:<7} {record.name} "
        line += f"[{context}] " if context else ""
        line += record.getMessage()
        error = getattr(record, ERROR_ATTR, None)
        if error:
            line += f" ({error['type']} {error['category']}: {error['message']})"
        for extra in (record.exc_text, record.stack_info):
            if extra:
                line += "\n" + extra
        return redact(line)


def _safe(value: Any) -> Any:
    """A JSON-ready copy of ``value`` with every string redacted."""
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, the context
    fields, ``error`` (expected errors), ``exception``, ``stack``, then any extras."""

    def format(self, record: logging.LogRecord) -> str:
        _ensure_prepared(record)
        payload: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        error = getattr(record, ERROR_ATTR, None)
        found = {"error": error, "exception": record.exc_text, "stack": record.stack_info}
        payload.update((k, v) for k, v in found.items() if v)
        skip = _STANDARD | {CONTEXT_ATTR, ERROR_ATTR, "color_message"}  # uvicorn's ANSI copy
        extras = record.__dict__.items()
        payload.update((k, v) for k, v in extras if k not in skip and k not in payload)
        return json.dumps(_safe(payload), ensure_ascii=False)


def _level(name: str) -> int:
    level = logging.getLevelNamesMapping().get(name.strip().upper())
    if level is None:
        raise ValueError(f"BULWARK_LOG_LEVEL={name!r} is not a level name (DEBUG, INFO, ...)")
    return level


def configure_logging(
    settings: Settings,
    *,
    stream: TextIO | None = None,
    expected_errors: tuple[type[BaseException], ...] = (),
) -> logging.Handler:
    """Send every log record to ``stream`` (standard error) in ``settings.log_format`` at
    ``settings.log_level``; idempotent (a second call replaces the first's handler).

    ``expected_errors`` adds exception types logged without a traceback (e.g. the services'
    ``ServiceError``). Uvicorn's loggers are routed here too: run uvicorn with
    ``log_config=None`` so it does not install its own handlers afterwards.
    """
    level = _level(settings.log_level)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _OURS, True)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    current = logging.getLogRecordFactory()
    previous = current.previous if isinstance(current, _RecordFactory) else current
    logging.setLogRecordFactory(_RecordFactory(previous, expected_errors))
    for name in _UVICORN:
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    for name in _NOISY:  # one INFO line per HTTP request to a provider is noise
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    return handler


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestContextMiddleware:
    """Binds ``request_id`` for a request's logs: the client's ``X-Request-ID`` when it is
    well-formed, else a new one; echoed in the response and kept in ``request.state``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        with bind_log_context(request_id=request_id):
            await self.app(scope, receive, send_with_id)


__all__ = [
    "LOG_CONTEXT_FIELDS",
    "JsonFormatter",
    "RequestContextMiddleware",
    "TextFormatter",
    "bind_log_context",
    "configure_logging",
    "log_context",
    "prepare_record",
    "reset_log_context",
    "set_log_context",
]
