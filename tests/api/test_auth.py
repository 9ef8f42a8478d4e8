"""The auth matrix: anonymous, a client, another client, an admin key and the admin token,
against every route group."""

from __future__ import annotations

import pytest

from backend.services.keys import ADMIN_TOKEN_PRINCIPAL
from tests.api.conftest import ADMIN, Api, SettingsFactory, bearer, error_of, running

KEY = "openai:org/model-x"
PRINCIPALS = ["anonymous", "client", "other", "admin_key", "admin_token"]


async def headers_for(api: Api) -> dict[str, dict[str, str]]:
    return {
        "anonymous": {},
        "client": await api.key("alice"),
        "other": await api.key("bob"),
        "admin_key": await api.key("ops", admin=True),
        "admin_token": ADMIN,
    }


async def test_task_routes(api: Api) -> None:
    who = await headers_for(api)
    task_id = (await api.submit(who["client"])).json()["id"]
    per_task = [
        ("GET", f"/v1/tasks/{task_id}"),
        ("GET", f"/v1/tasks/{task_id}/calls"),
        ("POST", f"/v1/tasks/{task_id}/cancel"),  # last: it cancels the task
    ]
    for name in PRINCIPALS:
        headers = who[name]
        submitted = await api.submit(headers)
        listed = await api.client.get("/v1/tasks", headers=headers)
        if name == "anonymous":
            for response in (submitted, listed):
                assert response.status_code == 401
                assert response.headers["WWW-Authenticate"] == "Bearer"
                assert error_of(response)[0] == "unauthorized"
        else:
            assert submitted.status_code == 202, (name, submitted.text)
            assert listed.status_code == 200
            assert submitted.json()["id"] in {t["id"] for t in listed.json()["tasks"]}
        for method, path in per_task:
            response = await api.client.request(method, path, headers=headers)
            expected = {"anonymous": 401, "client": 200}.get(name, 404)
            assert response.status_code == expected, (name, method, path, response.text)


async def test_admin_routes(api: Api) -> None:
    who = await headers_for(api)
    await api.client.post(f"/v1/admin/breakers/{KEY}/open", headers=ADMIN)
    routes = [
        ("GET", "/v1/admin/breakers"),
        ("GET", f"/v1/admin/breakers/{KEY}"),
        ("POST", f"/v1/admin/breakers/{KEY}/open"),
        ("POST", f"/v1/admin/breakers/{KEY}/reset"),
        ("GET", "/v1/admin/calls"),
        ("GET", "/v1/admin/stats"),
    ]
    expected = {"anonymous": 401, "client": 403, "other": 403, "admin_key": 200, "admin_token": 200}
    for name in PRINCIPALS:
        for method, path in routes:
            response = await api.client.request(method, path, headers=who[name])
            assert response.status_code == expected[name], (name, method, path, response.text)
            if response.status_code == 401:
                assert response.headers["WWW-Authenticate"] == "Bearer"
                assert error_of(response)[0] == "unauthorized"
            if response.status_code == 403:
                assert error_of(response)[0] == "forbidden"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/docs"])
async def test_open_routes(api: Api, path: str) -> None:
    who = await headers_for(api)
    for name in PRINCIPALS:
        response = await api.client.get(path, headers=who[name])
        assert response.status_code == 200, (name, path)


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer bwk_not-a-key",
        "Bearer admin-token-for-tests-but-longer",
        "Bearer " + "x" * 5000,
        "Basic YWxpY2U6c2VjcmV0",
        "Bearer",
        "bwk_no_scheme",
    ],
)
async def test_wrong_credentials_are_unauthorized(api: Api, authorization: str) -> None:
    for path in ("/v1/tasks", "/v1/admin/breakers"):
        response = await api.client.get(path, headers={"Authorization": authorization})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_a_revoked_key_is_unauthorized(api: Api) -> None:
    secret, key = await api.state.keys.create("temp")
    assert (await api.client.get("/v1/tasks", headers=bearer(secret))).status_code == 200
    assert await api.state.keys.store.revoke(key.id)  # type: ignore[attr-defined]
    assert (await api.client.get("/v1/tasks", headers=bearer(secret))).status_code == 401


async def test_operator_actions_record_who_did_them(api: Api) -> None:
    ops = await api.key("ops-alice", admin=True)
    await api.client.post(f"/v1/admin/breakers/{KEY}/open", headers=ops)
    await api.client.post(f"/v1/admin/breakers/{KEY}/reset", headers=ADMIN)
    events = (await api.client.get(f"/v1/admin/breakers/{KEY}", headers=ops)).json()["events"]
    assert [(e["reason"], e["actor"]) for e in events] == [
        ("reset", ADMIN_TOKEN_PRINCIPAL),
        ("forced_open", "ops-alice"),
    ]


async def test_without_an_admin_token_configured_no_token_is_admin(
    make_settings: SettingsFactory,
) -> None:
    async with running(make_settings(admin_token=None)) as api:
        response = await api.client.get("/v1/admin/breakers", headers=ADMIN)
        assert response.status_code == 401
        empty = await api.client.get("/v1/admin/breakers", headers={"Authorization": "Bearer "})
        assert empty.status_code == 401
