"""configure_logging: structured lines with the bound context, and no secret on any line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from backend.config import Settings
from backend.core.errors import BulwarkError, ErrorCategory, TransientError
from backend.core.redact import clear_registered_secrets, register_secret
from backend.logging_setup import (
    RequestContextMiddleware,
    TextFormatter,
    bind_log_context,
    configure_logging,
    log_context,
    reset_log_context,
    set_log_context,
)

PROJECT_KEY = "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90_Uv-Wx"
BEARER = "xyzTokenAb12Cd34Ef56Gh78Ij90"
URL_PASSWORD = "hunter2-pass"
URL = f"https://admin:{URL_PASSWORD}@llm.internal.example:8443/v1"
REGISTERED = "plain-looking-config-value-42"
SECRETS = (PROJECT_KEY, BEARER, URL_PASSWORD, REGISTERED)

log = logging.getLogger("bulwark.test.logging")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide logging: put everything back afterwards."""
    root = logging.getLogger()
    factory = logging.getLogRecordFactory()
    handlers, level = list(root.handlers), root.level
    named = {n: logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")}
    saved = {n: (list(lg.handlers), lg.propagate) for n, lg in named.items()}
    levels = {n: logging.getLogger(n).level for n in ("httpx", "httpcore")}
    clear_registered_secrets()
    yield
    clear_registered_secrets()
    logging.setLogRecordFactory(factory)
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    for name, (old, propagate) in saved.items():
        named[name].handlers[:] = old
        named[name].propagate = propagate
    for name, old_level in levels.items():
        logging.getLogger(name).setLevel(old_level)


def configure(log_format: str = "json", **kw: Any) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(Settings(log_format=log_format, log_level="DEBUG"), stream=stream, **kw)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


# --- context ------------------------------------------------------------------------------------


def test_json_lines_carry_the_bound_context() -> None:
    stream = configure()
    log.info("before")
    with bind_log_context(request_id="r-1", task_id="t-1", agent="reviewer"):
        with bind_log_context(call_id="c-1"):
            log.info("call %s", "started")
        log.warning("after the call")
    log.info("after")
    before, inside, after_call, after = lines(stream)
    assert "request_id" not in before and "task_id" not in after
    assert inside["message"] == "call started"
    assert (inside["request_id"], inside["task_id"], inside["call_id"], inside["agent"]) == (
        "r-1",
        "t-1",
        "c-1",
        "reviewer",
    )
    assert inside["level"] == "INFO" and inside["logger"] == "bulwark.test.logging"
    assert "call_id" not in after_call and after_call["task_id"] == "t-1"


async def test_context_follows_into_tasks_spawned_inside() -> None:
    stream = configure()

    async def work() -> None:
        await asyncio.sleep(0)
        log.info("in a child task")

    with bind_log_context(task_id="t-9"):
        child = asyncio.create_task(work())
    await child
    assert lines(stream)[0]["task_id"] == "t-9"


def test_an_explicit_extra_wins_and_none_keeps_the_bound_value() -> None:
    stream = configure()
    with bind_log_context(task_id="bound", agent="codesmith"):
        log.info("explicit", extra={"task_id": "given", "route": "code"})
        with bind_log_context(agent=None, call_id="c-2"):
            assert log_context() == {"task_id": "bound", "agent": "codesmith", "call_id": "c-2"}
            log.info("inner")
    explicit, inner = lines(stream)
    assert (explicit["task_id"], explicit["agent"], explicit["route"]) == (
        "given",
        "codesmith",
        "code",
    )
    assert (inner["agent"], inner["call_id"]) == ("codesmith", "c-2")


def test_setters_and_unknown_fields() -> None:
    token = set_log_context(request_id="r-2")
    assert log_context() == {"request_id": "r-2"}
    reset_log_context(token)
    assert log_context() == {}
    with pytest.raises(TypeError, match="task"):
        set_log_context(task="typo")


def test_text_lines_are_readable_and_carry_the_context() -> None:
    stream = configure("text")
    with bind_log_context(request_id="r-3", task_id="t-3"):
        log.info("claimed")
    line = stream.getvalue().strip()
    assert " INFO    bulwark.test.logging [request_id=r-3 task_id=t-3] claimed" in line
    assert line[:4].isdigit() and "T" in line.split()[0]


def test_a_second_configure_replaces_the_first() -> None:
    first = configure()
    second = configure("text")
    log.info("once")
    assert first.getvalue() == "" and second.getvalue().count("once") == 1


def test_a_bad_level_is_refused() -> None:
    with pytest.raises(ValueError, match="LOUD"):
        configure_logging(Settings(log_level="LOUD"), stream=io.StringIO())


# --- redaction ----------------------------------------------------------------------------------


def leaky_error() -> RuntimeError:
    return RuntimeError(f"request to {URL} failed with Authorization: Bearer {BEARER}")


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_no_secret_reaches_a_line(log_format: str, caplog: pytest.LogCaptureFixture) -> None:
    register_secret(REGISTERED)
    stream = configure(log_format)
    log.info(f"key {PROJECT_KEY} in the message")
    log.info("args: %s %r %s", f"Bearer {BEARER}", {"url": URL}, REGISTERED)
    log.info("mapping args: %(token)s", {"token": PROJECT_KEY})
    log.info("extra", extra={"endpoint": URL, "detail": {"key": PROJECT_KEY}})
    try:
        raise ValueError("wrapper") from leaky_error()
    except ValueError:
        log.exception("a bug with %s", REGISTERED)
    log.warning("stack", stack_info=True)
    output = stream.getvalue()
    assert output.count("[REDACTED]") >= 7
    assert "Traceback" in output and "RuntimeError" in output  # bugs keep their traceback
    for secret in SECRETS:
        assert secret not in output, secret
        assert secret not in caplog.text, secret  # other handlers get redacted records too
    for record in caplog.records:
        assert not record.args and record.exc_info is None


def test_a_broken_format_string_still_logs_without_secrets() -> None:
    stream = configure()
    log.info("two %s %s", PROJECT_KEY)
    (line,) = lines(stream)
    assert PROJECT_KEY not in line["message"] and "[REDACTED]" in line["message"]


def test_a_record_made_before_configuration_is_redacted_by_the_formatter() -> None:
    try:
        raise leaky_error()
    except RuntimeError as exc:
        record = logging.LogRecord(
            "x",
            logging.ERROR,
            __file__,
            1,
            "failed: %s",
            (PROJECT_KEY,),
            (type(exc), exc, exc.__traceback__),
        )
    text = TextFormatter().format(record)
    assert "failed: [REDACTED]" in text and "Traceback" in text
    assert all(secret not in text for secret in SECRETS)


# --- expected domain errors ---------------------------------------------------------------------


def test_expected_domain_errors_print_no_traceback() -> None:
    stream = configure()
    error = TransientError(
        f"openai:gpt-4o-mini failed at {URL}", category=ErrorCategory.SERVER_ERROR, attempts=4
    )
    try:
        raise error
    except TransientError:
        log.exception("task failed")
    (line,) = lines(stream)
    assert "exception" not in line
    assert line["error"]["type"] == "TransientError"
    assert line["error"]["category"] == "server_error"
    assert URL_PASSWORD not in json.dumps(line)


def test_unknown_category_is_a_bug_and_keeps_its_traceback() -> None:
    stream = configure("text")
    try:
        raise BulwarkError("something unexpected")
    except BulwarkError:
        log.exception("task failed")
    assert "Traceback (most recent call last)" in stream.getvalue()


def test_more_expected_error_types_can_be_named() -> None:
    class NotFound(Exception):
        code = "not_found"

    stream = configure(expected_errors=(NotFound,))
    try:
        raise NotFound("no task t-1")
    except NotFound:
        log.exception("lookup")
    (line,) = lines(stream)
    assert line["error"] == {"type": "NotFound", "category": "not_found", "message": "no task t-1"}
    assert "exception" not in line


# --- request ids --------------------------------------------------------------------------------


async def test_requests_get_an_id_in_their_logs_and_response() -> None:
    stream = configure()
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        log.info("handling ping")
        return {"ok": "yes"}

    app.add_middleware(RequestContextMiddleware)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        given = await client.get("/ping", headers={"X-Request-ID": "client-id-1"})
        made = await client.get("/ping", headers={"X-Request-ID": "bad id\n with spaces"})
    assert given.headers["x-request-id"] == "client-id-1"
    generated = made.headers["x-request-id"]
    assert len(generated) == 32 and generated != "client-id-1"
    assert [line["request_id"] for line in lines(stream)] == ["client-id-1", generated]
