"""``/v1/admin``: breakers seen and operated by operators (keys with ``:`` and ``/``), a
breaker opened by a real provider fault, the call history with its filters, and stats."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backend.llm.factory import create_gateway
from tests.api.conftest import ADMIN, Api, SettingsFactory, error_of, running, settings_for

SLASHED = "ollama:library/llama3:8b"

FAULTY = {
    "embedded_workers": True,
    "sim_faults": "model=reviewer,status=503",
    "breaker_threshold": 2,
    "retry_initial_wait": 0.01,
    "retry_max_wait": 0.02,
    "worker_poll_seconds": 0.05,
    "worker_grace_seconds": 1.0,
}


async def test_breakers_with_slashes_and_colons_can_be_opened_read_and_reset(api: Api) -> None:
    ops = await api.key("ops", admin=True)
    missing = await api.client.get(f"/v1/admin/breakers/{SLASHED}", headers=ops)
    assert missing.status_code == 404
    assert error_of(missing)[0] == "not_found"

    opened = await api.client.post(f"/v1/admin/breakers/{SLASHED}/open", headers=ops)
    assert opened.status_code == 200
    assert opened.json()["key"] == SLASHED
    assert opened.json()["state"] == "open"
    assert opened.json()["forced_open"] is True

    listed = (await api.client.get("/v1/admin/breakers", headers=ops)).json()["breakers"]
    [entry] = [b for b in listed if b["key"] == SLASHED]
    assert {"key", "state", "consecutive_failures", "opened_at", "retry_at", "last_error"} <= set(
        entry
    )
    assert entry["state"] == "open"

    detail = await api.client.get(f"/v1/admin/breakers/{SLASHED}", headers=ops)
    assert detail.status_code == 200
    assert detail.json()["breaker"]["state"] == "open"
    [event] = detail.json()["events"]
    assert (event["from_state"], event["to_state"], event["actor"]) == ("closed", "open", "ops")

    reset = await api.client.post(f"/v1/admin/breakers/{SLASHED}/reset", headers=ops)
    assert reset.json()["state"] == "closed"
    assert reset.json()["consecutive_failures"] == 0
    events = (await api.client.get(f"/v1/admin/breakers/{SLASHED}", headers=ops)).json()["events"]
    assert [e["reason"] for e in events] == ["reset", "forced_open"]

    encoded = await api.client.get("/v1/admin/breakers/ollama%3Alibrary%2Fllama3%3A8b", headers=ops)
    assert encoded.status_code == 200
    assert encoded.json()["breaker"]["key"] == SLASHED


@pytest.mark.parametrize("key", ["no-colon", ":model", "provider:"])
async def test_a_key_that_is_not_a_target_is_refused(api: Api, key: str) -> None:
    response = await api.client.post(f"/v1/admin/breakers/{key}/open", headers=ADMIN)
    assert response.status_code == 422
    assert error_of(response)[0] == "validation_error"


async def test_a_provider_fault_opens_the_breaker_and_an_operator_resets_it(
    make_settings: SettingsFactory,
) -> None:
    async with running(make_settings(**FAULTY)) as api:
        alice, ops = await api.key("alice"), await api.key("ops-bob", admin=True)
        task = (await api.submit(alice)).json()
        done = await api.client.get(f"/v1/tasks/{task['id']}", params={"wait": 30}, headers=alice)
        assert done.json()["status"] == "succeeded", done.text
        review = done.json()["result"]
        assert review["degraded"] is True  # no model reachable: static analysis only

        breakers = (await api.client.get("/v1/admin/breakers", headers=ops)).json()["breakers"]
        [reviewer] = [b for b in breakers if b["key"] == "sim:reviewer"]
        assert reviewer["state"] == "open"
        assert reviewer["opened_at"] is not None
        assert reviewer["retry_at"] is not None
        assert "503" in reviewer["last_error"]
        assert reviewer["consecutive_failures"] >= 2

        calls = (await api.client.get(f"/v1/tasks/{task['id']}/calls", headers=alice)).json()
        attempts = [a for call in calls["calls"] for a in call["attempts"]]
        assert [a["outcome"] for a in attempts] == ["failure", "failure"]
        assert {a["http_status"] for a in attempts} == {503}
        assert {a["category"] for a in attempts} == {"server_error"}

        reset = await api.client.post("/v1/admin/breakers/sim:reviewer/reset", headers=ops)
        assert reset.status_code == 200
        assert reset.json()["state"] == "closed"
        detail = (await api.client.get("/v1/admin/breakers/sim:reviewer", headers=ops)).json()
        assert detail["breaker"]["state"] == "closed"
        latest = detail["events"][0]
        assert (latest["reason"], latest["actor"], latest["to_state"]) == (
            "reset",
            "ops-bob",
            "closed",
        )
        assert any(e["reason"] == "failure_threshold" for e in detail["events"])


async def _make_calls(api: Api) -> None:
    """Two successful calls and one that fails over from a faulty target."""
    settings = api.settings.model_copy(
        update={
            "routes": {"review": ["sim:broken", "sim:reviewer"], "code": ["sim:coder"]},
            "sim_faults": "model=broken,status=500",
            "retry_max_retries": 1,
            "retry_initial_wait": 0.01,
        }
    )
    gateway = await create_gateway(settings)
    try:
        message = [{"role": "user", "content": "hi"}]
        await gateway.complete(message, route="code", agent="coder")
        await gateway.complete(message, route="code", agent="coder")
        await gateway.complete(message, route="review", agent="reviewer")
        await gateway.flush_history()
    finally:
        await gateway.aclose()


@pytest.fixture
async def db_api(database_url: str) -> AsyncIterator[Api]:
    """The API on SQLite, then on PostgreSQL."""
    async with running(settings_for(database_url)) as api:
        yield api


async def test_call_history_filters_and_pages(db_api: Api) -> None:
    api = db_api
    await _make_calls(api)

    async def calls(**params: Any) -> dict[str, Any]:
        response = await api.client.get("/v1/admin/calls", params=params, headers=ADMIN)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    everything = await calls()
    assert len(everything["calls"]) == 3
    assert everything["next_cursor"] is None
    assert [c["agent"] for c in (await calls(agent="coder"))["calls"]] == ["coder", "coder"]

    [failed_over] = (await calls(target="sim:broken"))["calls"]
    assert failed_over["target"] == "sim:reviewer"
    assert [a["target"] for a in failed_over["attempts"]] == [
        "sim:broken",
        "sim:broken",
        "sim:reviewer",
    ]
    assert [a["decision"] for a in failed_over["attempts"]] == ["retry", "fallback", "succeed"]
    assert (await calls(outcome="failure"))["calls"] == []

    first = await calls(limit=2)
    assert len(first["calls"]) == 2
    second = await calls(limit=2, cursor=first["next_cursor"])
    assert second["next_cursor"] is None
    ids = [c["id"] for c in first["calls"] + second["calls"]]
    assert sorted(ids) == sorted(c["id"] for c in everything["calls"])
    assert len(set(ids)) == 3

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await calls(since=future))["calls"] == []
    assert len((await calls(until=future))["calls"]) == 3

    bad_cursor = await api.client.get("/v1/admin/calls?cursor=nope", headers=ADMIN)
    assert error_of(bad_cursor)[0] == "validation_error"
    naive = await api.client.get("/v1/admin/calls?since=2026-01-01T00:00:00", headers=ADMIN)
    assert naive.status_code == 422


async def test_stats_aggregate_per_target(db_api: Api) -> None:
    api = db_api
    await _make_calls(api)
    await api.client.post("/v1/admin/breakers/sim:broken/open", headers=ADMIN)
    response = await api.client.get("/v1/admin/stats", params={"window": 600}, headers=ADMIN)
    assert response.status_code == 200
    stats = response.json()
    assert stats["window_seconds"] == 600
    targets = {t["target"]: t for t in stats["targets"]}
    coder, broken, reviewer = targets["sim:coder"], targets["sim:broken"], targets["sim:reviewer"]
    assert (coder["calls"], coder["calls_succeeded"], coder["attempts"]) == (2, 2, 2)
    assert coder["failures_by_category"] == {}
    assert coder["avg_attempt_ms"] is not None
    assert (broken["calls"], broken["attempts"], broken["retries"], broken["fallbacks"]) == (
        0,
        2,
        1,
        1,
    )
    assert broken["failures"] == 2
    assert broken["failures_by_category"] == {"server_error": 2}
    assert broken["breaker_transitions"] == {"open": 1}
    assert (reviewer["calls"], reviewer["attempts"]) == (1, 1)

    too_long = await api.client.get("/v1/admin/stats", params={"window": 0}, headers=ADMIN)
    assert too_long.status_code == 422
