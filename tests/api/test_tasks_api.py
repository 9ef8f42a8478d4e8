"""``/v1/tasks`` end to end on a real database: submit, read, list, cancel, idempotency,
long-poll and the task's LLM calls."""

from __future__ import annotations

import time

import pytest

from backend.llm.factory import create_gateway
from tests.api.conftest import Api, SettingsFactory, error_of, running, settings_for

TASK_FIELDS = {
    "id",
    "type",
    "status",
    "input",
    "result",
    "error",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "deadline_seconds",
    "attempts",
    "max_attempts",
    "cancel_requested",
}


async def test_submit_read_list_and_cancel_on_each_database(database_url: str) -> None:
    async with running(settings_for(database_url)) as api:
        alice = await api.key("alice")
        created = await api.submit(alice, input={"code": "print('hi')\n", "language": "python"})
        assert created.status_code == 202, created.text
        task = created.json()
        assert set(task) == TASK_FIELDS
        assert task["status"] == "queued"
        assert task["type"] == "review"
        assert task["input"]["code"] == "print('hi')\n"
        assert task["deadline_seconds"] == api.settings.task_deadline_seconds
        assert created.headers["Location"] == f"/v1/tasks/{task['id']}"

        read = await api.client.get(f"/v1/tasks/{task['id']}", headers=alice)
        assert read.status_code == 200
        assert read.json() == task

        listed = await api.client.get("/v1/tasks", headers=alice)
        assert listed.status_code == 200
        assert [t["id"] for t in listed.json()["tasks"]] == [task["id"]]
        assert listed.json()["next_cursor"] is None

        cancelled = await api.client.post(f"/v1/tasks/{task['id']}/cancel", headers=alice)
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        again = await api.client.post(f"/v1/tasks/{task['id']}/cancel", headers=alice)
        assert again.status_code == 200


async def test_list_filters_and_paginates_own_tasks(api: Api) -> None:
    alice, bob = await api.key("alice"), await api.key("bob")
    ids = [(await api.submit(alice, input={"code": f"x = {i}\n"})).json()["id"] for i in range(3)]
    code = await api.submit(alice, type="code", input={"instructions": "Write hello world."})
    assert code.status_code == 202, code.text
    await api.submit(bob)
    await api.client.post(f"/v1/tasks/{ids[0]}/cancel", headers=alice)

    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"type": "review", "limit": "1", **({"cursor": cursor} if cursor else {})}
        page = (await api.client.get("/v1/tasks", params=params, headers=alice)).json()
        seen += [t["id"] for t in page["tasks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]  # newest first, only alice's reviews

    queued = await api.client.get("/v1/tasks", params={"status": "queued"}, headers=alice)
    assert {t["id"] for t in queued.json()["tasks"]} == {*ids[1:], code.json()["id"]}
    cancelled = await api.client.get("/v1/tasks", params={"status": "cancelled"}, headers=alice)
    assert [t["id"] for t in cancelled.json()["tasks"]] == [ids[0]]

    bad = await api.client.get("/v1/tasks", params={"cursor": "garbage"}, headers=alice)
    assert bad.status_code == 422
    assert error_of(bad)[0] == "validation_error"
    assert "cursor" in error_of(bad)[1]
    bad_status = await api.client.get("/v1/tasks", params={"status": "lost"}, headers=alice)
    assert bad_status.status_code == 422


async def test_idempotency_key_same_body_same_task_other_body_conflict(api: Api) -> None:
    alice, bob = await api.key("alice"), await api.key("bob")
    key = {"Idempotency-Key": "order-42"}
    first = await api.submit({**alice, **key})
    assert first.status_code == 202
    assert "Idempotent-Replayed" not in first.headers

    repeat = await api.submit({**alice, **key})
    assert repeat.status_code == 200
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert repeat.json()["id"] == first.json()["id"]

    other = await api.submit({**alice, **key}, input={"code": "y = 2\n"})
    assert other.status_code == 409
    code, message = error_of(other)
    assert code == "idempotency_conflict"
    assert first.json()["id"] in message

    other_deadline = await api.submit({**alice, **key}, deadline_seconds=30)
    assert other_deadline.status_code == 409

    bobs = await api.submit({**bob, **key})  # keys are per client
    assert bobs.status_code == 202
    assert bobs.json()["id"] != first.json()["id"]


async def test_deadline_must_stay_within_the_maximum(make_settings: SettingsFactory) -> None:
    async with running(make_settings(task_max_deadline_seconds=600)) as api:
        alice = await api.key("alice")
        ok = await api.submit(alice, deadline_seconds=600)
        assert ok.status_code == 202
        assert ok.json()["deadline_seconds"] == 600
        for bad in (601, 0, -1):
            response = await api.submit(alice, deadline_seconds=bad)
            assert response.status_code == 422
            code, message = error_of(response)
            assert code == "validation_error"
            assert message.startswith("deadline_seconds:")


async def test_cancel_of_a_finished_task_is_a_conflict(api: Api) -> None:
    alice = await api.key("alice")
    task_id = (await api.submit(alice)).json()["id"]
    store = api.state.tasks.store
    [claimed] = await store.claim("test-worker", lease_seconds=30)
    assert claimed.id == task_id
    from backend.tasks.model import TaskStatus

    assert await store.finish(task_id, "test-worker", TaskStatus.SUCCEEDED, result={"ok": True})
    response = await api.client.post(f"/v1/tasks/{task_id}/cancel", headers=alice)
    assert response.status_code == 409
    assert error_of(response)[0] == "not_cancellable"


async def test_wait_returns_after_the_wait_when_the_task_does_not_finish(api: Api) -> None:
    alice = await api.key("alice")
    task_id = (await api.submit(alice)).json()["id"]
    started = time.monotonic()
    response = await api.client.get(f"/v1/tasks/{task_id}", params={"wait": 0.6}, headers=alice)
    waited = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert 0.5 <= waited < 3


async def test_wait_returns_as_soon_as_the_task_finishes(api: Api) -> None:
    import asyncio

    from backend.tasks.model import TaskStatus

    alice = await api.key("alice")
    task_id = (await api.submit(alice)).json()["id"]
    store = api.state.tasks.store

    async def finish_later() -> float:
        await asyncio.sleep(0.5)
        [task] = await store.claim("w", lease_seconds=30)
        await store.finish(task.id, "w", TaskStatus.SUCCEEDED, result={"summary": "ok"})
        return time.monotonic()

    finisher = asyncio.create_task(finish_later())
    response = await api.client.get(f"/v1/tasks/{task_id}", params={"wait": 30}, headers=alice)
    answered = time.monotonic()
    finished = await finisher
    assert response.json()["status"] == "succeeded"
    assert response.json()["result"] == {"summary": "ok"}
    assert answered - finished < 1.0


async def test_a_task_s_calls_come_with_their_attempts(api: Api) -> None:
    alice = await api.key("alice")
    task_id = (await api.submit(alice)).json()["id"]
    empty = await api.client.get(f"/v1/tasks/{task_id}/calls", headers=alice)
    assert empty.status_code == 200
    assert empty.json() == {"task_id": task_id, "calls": []}

    gateway = await create_gateway(api.settings)
    try:
        await gateway.complete(
            [{"role": "user", "content": "hello"}], route="review", agent="tester", task_id=task_id
        )
        await gateway.flush_history()
    finally:
        await gateway.aclose()

    response = await api.client.get(f"/v1/tasks/{task_id}/calls", headers=alice)
    assert response.status_code == 200
    [call] = response.json()["calls"]
    assert {"id", "agent", "route", "target", "outcome", "attempts", "replayed"} <= set(call)
    assert call["agent"] == "tester"
    assert call["route"] == "review"
    assert call["target"] == "sim:reviewer"
    assert call["outcome"] == "success"
    assert call["replayed"] is False
    [attempt] = call["attempts"]
    assert {
        "attempt",
        "target",
        "outcome",
        "category",
        "http_status",
        "started_at",
        "duration_ms",
        "decision",
        "wait_ms",
    } <= set(attempt)
    assert attempt["attempt"] == 1
    assert attempt["outcome"] == "success"
    assert attempt["decision"] == "succeed"


@pytest.mark.parametrize("path", ["", "/cancel", "/calls"])
async def test_another_client_s_task_is_not_found(api: Api, path: str) -> None:
    alice, bob = await api.key("alice"), await api.key("bob")
    task_id = (await api.submit(alice)).json()["id"]
    method = api.client.post if path == "/cancel" else api.client.get
    response = await method(f"/v1/tasks/{task_id}{path}", headers=bob)
    assert response.status_code == 404
    assert error_of(response)[0] == "not_found"
    unknown = await method(f"/v1/tasks/no-such-task{path}", headers=alice)
    assert unknown.status_code == 404


async def test_embedded_worker_runs_tasks_and_long_poll_returns_when_they_finish(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(embedded_workers=True, worker_grace_seconds=1.0)
    async with running(settings) as api:
        alice = await api.key("alice")
        review = (await api.submit(alice, input={"code": "def f(x):\n    return x\n"})).json()
        code = (
            await api.submit(alice, type="code", input={"instructions": "Write add(a, b)."})
        ).json()
        started = time.monotonic()
        done = await api.client.get(f"/v1/tasks/{review['id']}", params={"wait": 30}, headers=alice)
        assert time.monotonic() - started < 10
        body = done.json()
        assert body["status"] == "succeeded", body
        assert body["finished_at"] is not None
        assert {"summary", "score", "findings", "degraded", "model"} <= set(body["result"])
        assert body["result"]["model"] == "sim:reviewer"

        written = await api.client.get(
            f"/v1/tasks/{code['id']}", params={"wait": 30}, headers=alice
        )
        assert written.json()["status"] == "succeeded", written.text
        assert {"language", "code", "explanation", "checks", "review", "model"} <= set(
            written.json()["result"]
        )

        calls = (await api.client.get(f"/v1/tasks/{review['id']}/calls", headers=alice)).json()
        assert calls["calls"], "the review made no recorded LLM call"
        assert all(c["agent"] == "reviewer" for c in calls["calls"])
        assert all(c["attempts"] for c in calls["calls"])
