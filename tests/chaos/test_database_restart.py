"""The database restarted under load: ``bulwark serve`` (embedded workers) on a private
PostgreSQL cluster, a client submitting tasks all along; the cluster is stopped (``pg_ctl stop
-m fast``) for a few seconds and started again. While it is down the API answers 503 with
Retry-After (and no other 5xx); afterwards it recovers by itself, and every task it accepted
succeeds, with its LLM calls in the history."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.db.migrate import upgrade
from tests.chaos.helpers import PrivatePostgres, Server, base_env

pytestmark = pytest.mark.slow

DOWN_SECONDS = 4.0
FINISH_WITHIN = 60.0


@pytest.fixture
def server(private_postgres: PrivatePostgres, tmp_path: Path) -> Iterator[Server]:
    upgrade(private_postgres.url)
    env = base_env(
        private_postgres.url, sim_latency_ms="30", worker_lease_seconds="3", retry_max_wait="0.5"
    )
    server = Server(tmp_path, env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


class Submitter(threading.Thread):
    """Submits a review task every ``every`` seconds until stopped; keeps every answer."""

    def __init__(self, server: Server, every: float = 0.15) -> None:
        super().__init__()
        self.server = server
        self.every = every
        self.stopped = threading.Event()
        self.answers: list[tuple[float, int, dict[str, str], dict[str, object]]] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.server.admin_key}"}
        try:
            with httpx.Client(base_url=self.server.url, headers=headers, timeout=15) as client:
                n = 0
                while not self.stopped.is_set():
                    n += 1
                    body = {"type": "review", "input": {"code": f"x = {n}\n"}}
                    answer = client.post("/v1/tasks", json=body)
                    self.answers.append(
                        (time.monotonic(), answer.status_code, dict(answer.headers), answer.json())
                    )
                    self.stopped.wait(self.every)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def since(self, moment: float) -> list[int]:
        return [status for at, status, _, _ in self.answers if at >= moment]


def test_api_answers_503_while_the_database_is_down_and_loses_no_task(
    private_postgres: PrivatePostgres, server: Server
) -> None:
    submitter = Submitter(server)
    submitter.start()
    try:
        time.sleep(2.0)
        stopped_at = time.monotonic()
        private_postgres.stop("fast")
        time.sleep(DOWN_SECONDS)
        private_postgres.start()
        restarted_at = time.monotonic()
        give_up = restarted_at + 30
        while 202 not in submitter.since(restarted_at + 0.5):  # recovers by itself
            assert time.monotonic() < give_up, submitter.answers[-5:]
            assert submitter.is_alive(), submitter.errors
            time.sleep(0.1)
        time.sleep(1.5)
    finally:
        submitter.stopped.set()
        submitter.join(30)
    assert not submitter.errors, submitter.errors

    statuses = [status for _, status, _, _ in submitter.answers]
    before = [status for at, status, _, _ in submitter.answers if at < stopped_at]
    assert 202 in before, before  # accepted before, and (checked above) after the outage
    unavailable = [
        (headers, body) for _, status, headers, body in submitter.answers if status == 503
    ]
    assert unavailable, "no 503 while the database was down"
    for headers, body in unavailable:
        assert int(headers["retry-after"]) > 0, headers
        assert isinstance(body["error"], dict) and body["error"]["code"], body
    assert set(statuses) <= {202, 503}, sorted(set(statuses))
    accepted = [str(body["id"]) for _, status, _, body in submitter.answers if status == 202]

    headers = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=15) as client:
        give_up = time.monotonic() + FINISH_WITHIN
        pending = set(accepted)
        while pending:
            for task_id in sorted(pending):
                task = client.get(f"/v1/tasks/{task_id}").json()
                assert task["status"] in ("queued", "running", "succeeded"), task
                if task["status"] == "succeeded":
                    pending.discard(task_id)
            assert time.monotonic() < give_up, f"{len(pending)} tasks never finished"
            time.sleep(0.2)
        for task_id in accepted:  # no history lost for the calls that completed
            calls = client.get(f"/v1/tasks/{task_id}/calls").json()["calls"]
            assert any(call["outcome"] == "success" for call in calls), (task_id, calls)
            for call in calls:
                assert call["attempts"] or call.get("replayed"), (task_id, str(call))
    assert server.stop() == 0
