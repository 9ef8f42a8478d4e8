"""``GET /dashboard``: admins only, by HTTP Basic (what a browser can send when it
navigates), its assets served by Bulwark; Basic credentials accepted by the admin API, with
the CSRF header required on unsafe requests; and the stats the charts draw."""

from __future__ import annotations

import base64
from datetime import datetime
from itertools import pairwise

from backend.services.stats import MAX_BUCKETS
from tests.api.conftest import ADMIN, ADMIN_TOKEN, Api, error_of
from tests.api.test_admin_api import _make_calls

CSRF = {"X-Bulwark-Dashboard": "1"}


def basic(password: str, user: str = "admin") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def secret_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def test_the_page_asks_for_basic_credentials(api: Api) -> None:
    for headers in ({}, basic("wrong"), {"Authorization": "Basic !!!not-base64"}):
        response = await api.client.get("/dashboard", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"].startswith('Basic realm="Bulwark dashboard"')
        assert error_of(response)[0] == "unauthorized"
        assert "<html" not in response.text


async def test_a_client_key_is_forbidden(api: Api) -> None:
    client = secret_of(await api.key("alice"))
    for headers in (basic(client), {"Authorization": f"Bearer {client}"}):
        response = await api.client.get("/dashboard", headers=headers)
        assert response.status_code == 403
        assert error_of(response)[0] == "forbidden"


async def test_an_admin_sees_the_page_served_whole_by_bulwark(api: Api) -> None:
    ops = secret_of(await api.key("ops", admin=True))
    for headers in (basic(ops), basic(ADMIN_TOKEN, user="anyone"), basic(ops, user=""), ADMIN):
        page = await api.client.get("/dashboard", headers=headers)
        assert page.status_code == 200, headers
        assert page.headers["content-type"].startswith("text/html")
        assert "<title>Bulwark dashboard</title>" in page.text
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "http://" not in page.text.replace("http://www.w3.org", "")
    assert "https://" not in page.text

    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        asset = await api.client.get(f"/dashboard/static/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["content-type"].startswith(kind)
        assert f"/dashboard/static/{name}" in page.text
        assert "https://" not in asset.text  # no CDN, no external font
    script = (await api.client.get("/dashboard/static/dashboard.js")).text
    assert "X-Bulwark-Dashboard" in script
    assert "innerHTML" not in script

    for name in ("index.html", "../auth.py", "nothing.js", "..%2Fauth.py"):
        missing = await api.client.get(f"/dashboard/static/{name}")
        assert missing.status_code == 404, name


async def test_basic_posts_need_the_dashboard_header_and_bearer_ones_do_not(api: Api) -> None:
    ops = secret_of(await api.key("ops", admin=True))
    url = "/v1/admin/breakers/sim:reviewer"
    await api.client.post(f"{url}/open", headers=ADMIN)

    listed = await api.client.get("/v1/admin/breakers", headers=basic(ops))
    assert listed.status_code == 200
    assert [b["state"] for b in listed.json()["breakers"]] == ["open"]

    refused = await api.client.post(f"{url}/reset", headers=basic(ops))
    assert refused.status_code == 403
    assert error_of(refused) == (
        "forbidden",
        "a request authenticated by Basic that changes something needs 'X-Bulwark-Dashboard: 1'",
    )
    wrong_value = await api.client.post(
        f"{url}/reset", headers={**basic(ops), "X-Bulwark-Dashboard": "yes"}
    )
    assert wrong_value.status_code == 403
    still = await api.client.get(url, headers=ADMIN)
    assert still.json()["breaker"]["state"] == "open"

    reset = await api.client.post(f"{url}/reset", headers={**basic(ops), **CSRF})
    assert reset.status_code == 200
    assert reset.json()["state"] == "closed"
    events = (await api.client.get(url, headers=ADMIN)).json()["events"]
    assert (events[0]["reason"], events[0]["actor"]) == ("reset", "ops")

    unknown = await api.client.post(f"{url}/open", headers={**basic("nope"), **CSRF})
    assert unknown.status_code == 401
    client = secret_of(await api.key("alice"))
    not_admin = await api.client.post(f"{url}/open", headers={**basic(client), **CSRF})
    assert not_admin.status_code == 403

    by_bearer = await api.client.post(f"{url}/open", headers={"Authorization": f"Bearer {ops}"})
    assert by_bearer.status_code == 200
    assert by_bearer.json()["state"] == "open"
    none = await api.client.post(f"{url}/reset")
    assert none.status_code == 401
    assert none.headers["WWW-Authenticate"] == "Bearer"


async def test_basic_task_submission_needs_the_header_too(api: Api) -> None:
    alice = secret_of(await api.key("alice"))
    body = {"type": "review", "input": {"code": "x = 1\n"}}
    refused = await api.client.post("/v1/tasks", json=body, headers=basic(alice))
    assert refused.status_code == 403
    accepted = await api.client.post("/v1/tasks", json=body, headers={**basic(alice), **CSRF})
    assert accepted.status_code in (201, 202), accepted.text


async def test_stats_carry_time_buckets_and_error_categories(api: Api) -> None:
    await _make_calls(api)
    response = await api.client.get("/v1/admin/stats", params={"window": 3600}, headers=ADMIN)
    assert response.status_code == 200
    stats = response.json()
    assert stats["bucket_seconds"] == 60
    assert stats["failures_by_category"] == {"server_error": 2}
    targets = {t["target"]: t for t in stats["targets"]}
    until = datetime.fromisoformat(stats["until"])
    for target in targets.values():
        buckets = target["buckets"]
        assert len(buckets) == MAX_BUCKETS
        starts = [datetime.fromisoformat(b["start"]) for b in buckets]
        assert all((b - a).total_seconds() == 60 for a, b in pairwise(starts))
        assert (until - starts[-1]).total_seconds() == 60
        assert sum(b["calls"] for b in buckets) == target["calls"]
        assert sum(b["retries"] for b in buckets) == target["retries"]
        assert sum(b["failures"] for b in buckets) == target["failures"]
    broken = targets["sim:broken"]["buckets"]
    assert (sum(b["retries"] for b in broken), sum(b["failures"] for b in broken)) == (1, 2)
    assert sum(b["calls"] for b in targets["sim:coder"]["buckets"]) == 2

    short = (await api.client.get("/v1/admin/stats", params={"window": 10}, headers=ADMIN)).json()
    assert short["bucket_seconds"] == 1
    assert all(len(t["buckets"]) == 10 for t in short["targets"])
    odd = (await api.client.get("/v1/admin/stats", params={"window": 3601}, headers=ADMIN)).json()
    assert odd["bucket_seconds"] == 61
    assert all(len(t["buckets"]) == 60 for t in odd["targets"])


async def test_the_openapi_document_does_not_list_the_page(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    assert not any(path.startswith("/dashboard") for path in spec["paths"])
