"""Every error answer has the shape ``{"error": {"code", "message"}}`` and the right status;
429 and 503 carry ``Retry-After``; nothing ever shows a traceback."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tests.api.conftest import ADMIN, Api, SettingsFactory, error_of, running, settings_for
from tests.conftest import PG_HOST, PG_PORT, PG_USER


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_malformed_json_is_invalid_json(api: Api) -> None:
    response = await api.client.post(
        "/v1/tasks",
        content=b'{"type": "review", "input": {',
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    code, message = error_of(response)
    assert code == "invalid_json"
    assert "JSON" in message


async def test_a_body_that_is_not_utf8_is_invalid_json(api: Api) -> None:
    response = await api.client.post(
        "/v1/tasks",
        content=b'{"type": "review", "input": {"code": "\xff\xfe"}}',
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert error_of(response)[0] == "invalid_json"


async def test_a_missing_field_is_named(api: Api) -> None:
    response = await api.submit(ADMIN, input={"language": "python"})
    assert response.status_code == 422
    assert error_of(response) == ("validation_error", "input.code: Field required")

    wrong_type = await api.submit(ADMIN, type="code", input={"instructions": 42})
    code, message = error_of(wrong_type)
    assert code == "validation_error"
    assert message.startswith("input.instructions:")

    no_type = await api.client.post("/v1/tasks", json={"input": {}}, headers=ADMIN)
    code, message = error_of(no_type)
    assert code == "validation_error"
    assert message.startswith("type: Field required")
    assert "code, review" in message

    extra = await api.submit(ADMIN, priority="high")
    assert error_of(extra)[0] == "validation_error"
    assert "priority" in error_of(extra)[1]

    not_an_object = await api.client.post("/v1/tasks", json=[1, 2], headers=ADMIN)
    assert not_an_object.status_code == 422
    assert error_of(not_an_object)[0] == "validation_error"


async def test_an_unknown_task_type_lists_the_valid_ones(api: Api) -> None:
    response = await api.submit(ADMIN, type="translate", input={"text": "hola"})
    assert response.status_code == 422
    code, message = error_of(response)
    assert code == "unknown_task_type"
    assert "'translate'" in message
    assert "valid types: code, review" in message


async def test_a_body_over_the_limit_is_refused_early_and_by_its_real_size(
    make_settings: SettingsFactory,
) -> None:
    async with running(make_settings(max_code_bytes=2048)) as api:
        big = "x = 1\n" * 500
        declared = await api.submit(ADMIN, input={"code": big})
        assert declared.status_code == 413
        code, message = error_of(declared)
        assert code == "payload_too_large"
        assert "2048" in message

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            yield b'{"type": "review", "input": {"code": "'
            for _ in range(10):
                yield b"y" * 300
            yield b'"}}'

        streamed = await api.client.post(
            "/v1/tasks", content=chunks(), headers={**ADMIN, "Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        assert error_of(streamed)[0] == "payload_too_large"

        small = await api.submit(ADMIN, input={"code": "x = 1\n" * 100})
        assert small.status_code == 202


async def test_over_the_queued_limit_is_429_with_retry_after(
    make_settings: SettingsFactory,
) -> None:
    async with running(make_settings(client_queued_limit=2)) as api:
        alice, bob = await api.key("alice"), await api.key("bob")
        for _ in range(2):
            assert (await api.submit(alice)).status_code == 202
        refused = await api.submit(alice)
        assert refused.status_code == 429
        assert error_of(refused)[0] == "too_many_queued"
        assert int(refused.headers["Retry-After"]) > 0
        assert (await api.submit(bob)).status_code == 202  # the limit is per client

        tasks = (await api.client.get("/v1/tasks", headers=alice)).json()["tasks"]
        await api.client.post(f"/v1/tasks/{tasks[0]['id']}/cancel", headers=alice)
        assert (await api.submit(alice)).status_code == 202


async def test_database_unreachable_is_503_with_retry_after() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    async with running(settings_for(url), migrate=False) as api:
        ready = await api.client.get("/readyz")
        assert ready.status_code == 503
        assert error_of(ready)[0] == "database_unavailable"
        assert int(ready.headers["Retry-After"]) > 0
        assert (await api.client.get("/healthz")).status_code == 200

        for response in (
            await api.submit(ADMIN),
            await api.client.get("/v1/tasks", headers=ADMIN),
            await api.client.get("/v1/admin/calls", headers=ADMIN),
            await api.client.get("/v1/tasks", headers={"Authorization": "Bearer bwk_x"}),
        ):
            assert response.status_code == 503, response.text
            code, message = error_of(response)
            assert code == "database_unavailable"
            assert "Traceback" not in message
            assert int(response.headers["Retry-After"]) > 0


async def test_a_stopped_database_makes_readyz_503(postgres_url: str) -> None:
    """A database that answers, then goes away (dropped, as when a server stops)."""
    async with running(settings_for(postgres_url)) as api:
        assert (await api.client.get("/readyz")).status_code == 200
        name = postgres_url.rsplit("/", 1)[1]
        conn = await asyncpg.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5
        )
        try:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        ready = await api.client.get("/readyz")
        assert ready.status_code == 503
        assert error_of(ready)[0] == "database_unavailable"
        assert "Retry-After" in ready.headers


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/nothing", 404, "not_found"),
        ("GET", "/", 404, "not_found"),
        ("DELETE", "/v1/tasks", 405, "method_not_allowed"),
        ("PUT", "/healthz", 405, "method_not_allowed"),
    ],
)
async def test_unknown_routes_and_methods_answer_in_the_same_shape(
    api: Api, method: str, path: str, status: int, code: str
) -> None:
    response = await api.client.request(method, path, headers=ADMIN)
    assert response.status_code == status
    assert error_of(response)[0] == code


async def test_an_unexpected_exception_is_500_without_details(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        async def list(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("secret internals /etc/passwd")

    async with running(make_settings(), raise_app_exceptions=False) as api:
        api.app.state.bulwark = dataclasses.replace(api.state, tasks=Broken())  # type: ignore[arg-type]
        response = await api.client.get("/v1/tasks", headers=ADMIN)
        assert response.status_code == 500
        assert error_of(response)[0] == "internal_error"
        assert "secret internals" not in response.text
        assert "Traceback" not in response.text
    assert any("secret internals" in (r.exc_text or "") for r in caplog.records)


async def test_transport_errors_are_not_leaked_as_html(api: Api) -> None:
    response = await api.client.get("/v1/tasks/%00", headers=ADMIN)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")


async def test_error_responses_are_json_for_every_status(api: Api) -> None:
    for response in (
        await api.client.get("/v1/tasks"),
        await api.client.get("/v1/admin/breakers", headers=await api.key("c")),
    ):
        assert response.headers["content-type"] == "application/json"
        assert isinstance(error_of(response), tuple)
    assert isinstance(api.client, httpx.AsyncClient)
