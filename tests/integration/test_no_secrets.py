"""No secret leaves Bulwark: provider keys, the admin token, API keys and the metrics token
appear in no log line, no HTTP answer (body or header) and no database row, whatever path a
request takes (success, provider errors that echo the key, timeouts, bad credentials,
malformed and invalid bodies, admin and metrics endpoints). No answer shows a traceback."""

from __future__ import annotations

import io
import logging
from typing import Any

import httpx
import pytest

from backend.api import create_app
from backend.config import Settings
from backend.logging_setup import configure_logging
from tests.fakes.behaviours import auth_error, hang, rate_limit, reply_json, server_error
from tests.fakes.provider_server import FakeProviderServer
from tests.integration.gateway_helpers import ANTHROPIC, OPENAI
from tests.integration.secret_helpers import Recorder, dump_database, leaks, restored_logging

OPENAI_KEY = "sk-proj-LEAKTEST" + "Qw3rTy9uI0pAsDfGhJkLzXcVbNm1234567890abcdEFGHijklMNOP"
ANTHROPIC_KEY = "sk-ant-LEAKTEST" + "api03-ZyXwVuTsRqPoNmLkJiHgFeDcBa0987654321"
ADMIN_TOKEN = "adm-LEAKTEST-7f3c9a1e5b2d8c4f6a0e"
METRICS_TOKEN = "met-LEAKTEST-2b8e4d6f0a1c3e5g7h9j"
BASE_URL = "http://bulwark.test"
REVIEW = {"summary": "Fine.", "score": 90, "findings": []}


def settings(server: FakeProviderServer, database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        routes={"review": [OPENAI, ANTHROPIC], "code": [OPENAI, ANTHROPIC], "default": [OPENAI]},
        openai_api_key=OPENAI_KEY,
        openai_base_url=server.openai_base_url,
        anthropic_api_key=ANTHROPIC_KEY,
        anthropic_base_url=server.anthropic_base_url,
        admin_token=ADMIN_TOKEN,
        metrics_token=METRICS_TOKEN,
        log_format="json",
        log_level="DEBUG",
        retry_max_retries=1,
        retry_initial_wait=0.01,
        retry_max_wait=0.05,
        retry_attempt_timeout=1.0,
        history_flush_seconds=0.05,
        worker_poll_seconds=0.05,
        worker_grace_seconds=2.0,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def run_task(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    """Submit a review and wait until it finishes."""
    payload = {"type": "review", "input": {"code": "x = 1\n"}}
    submitted = await client.post("/v1/tasks", json=payload, headers=headers)
    assert submitted.status_code == 202, submitted.text
    task_id = submitted.json()["id"]
    for _ in range(20):
        answer = await client.get(f"/v1/tasks/{task_id}", params={"wait": 2}, headers=headers)
        assert answer.status_code == 200, answer.text
        task: dict[str, Any] = answer.json()
        if task["status"] in ("succeeded", "failed", "cancelled"):
            calls = await client.get(f"/v1/tasks/{task_id}/calls", headers=headers)
            assert calls.status_code == 200, calls.text
            return task
    raise AssertionError(f"task {task_id} did not finish")


def echo(key: str, what: str) -> str:
    return f"{what}: Incorrect API key provided: {key}. You can find your API key at ..."


async def test_no_secret_reaches_logs_answers_or_the_database(
    provider_server: FakeProviderServer,
    sqlite_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = provider_server
    config = settings(server, sqlite_url)
    stream = io.StringIO()
    recorder = Recorder()
    secrets = {
        "openai key": OPENAI_KEY,
        "anthropic key": ANTHROPIC_KEY,
        "admin token": ADMIN_TOKEN,
        "metrics token": METRICS_TOKEN,
    }
    with restored_logging():
        configure_logging(config, stream=stream)
        caplog.set_level(logging.DEBUG)
        app = create_app(config)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(
                transport=transport, base_url=BASE_URL, event_hooks={"response": [recorder]}
            ) as client:
                api_key, _ = await app.state.bulwark.keys.create("leak-test")
                secrets["api key"] = api_key
                user, admin = bearer(api_key), bearer(ADMIN_TOKEN)
                server.set_default(reply_json(REVIEW))

                # 1. Success on the first target.
                assert (await run_task(client, user))["status"] == "succeeded"

                # 2. Both providers reject the key and echo it (401), then a 500 echoing it.
                server.script(auth_error(message=echo(OPENAI_KEY, "401")), provider="openai")
                server.script(
                    server_error(500, anthropic_message=echo(ANTHROPIC_KEY, "500")),
                    server_error(500, anthropic_message=echo(ANTHROPIC_KEY, "500 again")),
                    provider="anthropic",
                )
                await run_task(client, user)

                # 3. A 500 and a 429 echoing the key, then the fallback hangs (timeout).
                server.script(
                    server_error(500, message=f"upstream failed for key {OPENAI_KEY}"),
                    rate_limit(message=f"Rate limit reached for key {OPENAI_KEY}", retry_after=0),
                    provider="openai",
                )
                server.script(hang(), hang(), provider="anthropic")
                await run_task(client, user)
                server.reset()
                server.set_default(reply_json(REVIEW))

                # Bad credentials: secret-looking wrong bearers, and the right ones.
                for token in (OPENAI_KEY, ANTHROPIC_KEY, METRICS_TOKEN, api_key + "x"):
                    answer = await client.get("/v1/tasks", headers=bearer(token))
                    assert answer.status_code == 401, answer.text
                    answer = await client.get("/v1/admin/breakers", headers=bearer(token))
                    assert answer.status_code == 401, answer.text
                assert (await client.get("/v1/tasks", headers=admin)).status_code == 200
                assert (await client.get("/v1/tasks", headers=user)).status_code == 200
                forbidden = await client.get("/v1/admin/breakers", headers=user)
                assert forbidden.status_code == 403, forbidden.text

                # A malformed JSON body and validation errors carrying the secrets.
                for secret in (OPENAI_KEY, ADMIN_TOKEN, api_key):
                    broken = '{"type": "review", "input": {"code": "' + secret + '"'
                    answer = await client.post(
                        "/v1/tasks",
                        content=broken,
                        headers={**user, "Content-Type": "application/json"},
                    )
                    assert answer.status_code == 422, answer.text
                    invalid: list[dict[str, Any]] = [
                        {"type": "review", "input": {"code": 1, "language": {"k": secret}}},
                        {
                            "type": "review",
                            "input": {"code": "x = 1\n"},
                            "deadline_seconds": secret,
                        },
                        {"type": "review", "input": secret},
                        {"type": secret, "input": {"code": "x = 1\n"}},
                    ]
                    for body in invalid:
                        answer = await client.post("/v1/tasks", json=body, headers=user)
                        assert answer.status_code == 422, answer.text
                    answer = await client.get(
                        "/v1/admin/calls", params={"limit": secret, "since": secret}, headers=admin
                    )
                    assert answer.status_code == 422, answer.text

                # Metrics, with and without the token.
                assert (await client.get("/metrics")).status_code == 401
                wrong = await client.get("/metrics", headers=bearer(OPENAI_KEY))
                assert wrong.status_code == 401
                assert (await client.get("/metrics", headers=bearer(METRICS_TOKEN))).is_success

                # Admin endpoints.
                breakers = await client.get("/v1/admin/breakers", headers=admin)
                assert breakers.status_code == 200, breakers.text
                for breaker in breakers.json()["breakers"]:
                    key = breaker["key"]
                    assert (await client.get(f"/v1/admin/breakers/{key}", headers=admin)).is_success
                    reset = await client.post(f"/v1/admin/breakers/{key}/reset", headers=admin)
                    assert reset.is_success, reset.text
                calls = await client.get("/v1/admin/calls", headers=admin)
                assert calls.status_code == 200 and calls.json()["calls"], calls.text
                assert (await client.get("/v1/admin/stats", headers=admin)).is_success
                assert (await client.get("/v1/admin/calls", headers=user)).status_code == 403

    # Every provider path was taken: the scripted errors were all served.
    assert not any(server.pending().values()), server.pending()

    rows = await dump_database(sqlite_url)
    assert rows["llm_attempts"] and rows["tasks"] and rows["api_keys"]
    records = [
        (f"log record {r.name}", f"{r.getMessage()} {r.exc_text or ''} {r.__dict__!r}")
        for r in caplog.records
    ]
    texts = [
        ("the JSON log stream", stream.getvalue()),
        ("caplog text", caplog.text),
        *records,
        *((f"{x.label} -> {x.status} headers", x.headers) for x in recorder.exchanges),
        *((f"{x.label} -> {x.status} body", x.body) for x in recorder.exchanges),
        *((f"table {name}", "\n".join(lines)) for name, lines in rows.items()),
    ]
    assert stream.getvalue() and caplog.records and len(recorder.exchanges) > 40
    found = leaks(secrets, texts)
    assert found == [], "\n".join(found)
    shown = [x.label for x in recorder.exchanges if "Traceback" in x.body]
    assert shown == []
