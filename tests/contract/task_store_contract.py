"""The behaviour every :class:`~backend.tasks.model.TaskStore` must show, written once and run
against every implementation.

To run it on a store, subclass :class:`TaskStoreContract` in a ``test_*.py`` file and
override the ``open_store`` fixture: a factory that opens another store on the same, empty
storage each time it is called (the race test opens two, as two processes would)::

    class TestSqliteTaskStore(TaskStoreContract):
        @pytest.fixture
        async def open_store(self, sqlite_url: str) -> AsyncIterator[OpenStore]:
            ...

Time comes from the contract's fake clock, so leases expire and deadlines pass at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest

from backend.core.clock import Clock
from backend.tasks.model import (
    IdempotencyConflict,
    InvalidCursor,
    NewTask,
    Task,
    TaskError,
    TaskStatus,
    TaskStore,
)
from backend.testing import FakeClock

OpenStore = Callable[[Clock], TaskStore]
LEASE = 30.0


def new_task(owner: str = "key-1", **changes: Any) -> NewTask:
    values: dict[str, Any] = {
        "owner": owner,
        "type": "review",
        "input": {"code": "print('hi')", "language": "python"},
        "deadline_seconds": 300.0,
        "max_attempts": 3,
    }
    values.update(changes)
    return NewTask(**values)


class TaskStoreContract:
    """Not collected by itself (no ``Test`` prefix); subclasses provide ``open_store``."""

    @pytest.fixture
    async def open_store(self) -> AsyncIterator[OpenStore]:
        raise NotImplementedError("a TaskStoreContract subclass must override `open_store`")
        yield  # pragma: no cover  (makes this an async generator, like real fixtures)

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def store(self, open_store: OpenStore, clock: FakeClock) -> TaskStore:
        return open_store(clock)

    async def create(self, store: TaskStore, **changes: Any) -> Task:
        task, created = await store.create(new_task(**changes))
        assert created
        return task

    # -- creating and reading -----------------------------------------------------------

    async def test_create_then_get(self, store: TaskStore, clock: FakeClock) -> None:
        task = await self.create(store, deadline_seconds=60.0)
        assert task.status is TaskStatus.QUEUED
        assert (task.owner, task.type, task.attempts, task.max_attempts) == (
            "key-1",
            "review",
            0,
            3,
        )
        assert task.input == {"code": "print('hi')", "language": "python"}
        assert task.created_at == clock.now() and task.created_at.tzinfo is not None
        assert task.deadline_at == clock.now() + timedelta(seconds=60)
        assert task.result is None and task.error is None and not task.cancel_requested
        assert task.input_hash is not None and len(task.id) == 36
        assert await store.get(task.id) == task
        assert await store.get(task.id, owner="key-1") == task
        assert await store.get("00000000-0000-0000-0000-000000000000") is None

    async def test_owners_see_only_their_tasks(self, store: TaskStore) -> None:
        mine = await self.create(store, owner="key-1")
        theirs = await self.create(store, owner="key-2")
        assert await store.get(mine.id, owner="key-2") is None
        assert [t.id for t in (await store.list("key-2")).tasks] == [theirs.id]
        assert {t.id for t in (await store.list(None)).tasks} == {mine.id, theirs.id}
        assert await store.request_cancel(mine.id, owner="key-2") is None
        assert (await store.get(mine.id)).status is TaskStatus.QUEUED  # type: ignore[union-attr]

    async def test_same_idempotency_key_and_body_returns_the_first_task(
        self, store: TaskStore
    ) -> None:
        first, created = await store.create(new_task(idempotency_key="k1"))
        again, created_again = await store.create(new_task(idempotency_key="k1"))
        assert created and not created_again
        assert again == first
        other_owner, created_other = await store.create(new_task("key-2", idempotency_key="k1"))
        assert created_other and other_owner.id != first.id

    async def test_same_idempotency_key_with_another_body_conflicts(self, store: TaskStore) -> None:
        first = await self.create(store, idempotency_key="k1")
        with pytest.raises(IdempotencyConflict) as raised:
            await store.create(new_task(idempotency_key="k1", input={"code": "other"}))
        assert raised.value.task_id == first.id
        assert len((await store.list("key-1")).tasks) == 1

    async def test_concurrent_creates_with_one_key_make_one_task(self, store: TaskStore) -> None:
        results = await asyncio.gather(
            *(store.create(new_task(idempotency_key="race")) for _ in range(10))
        )
        assert len({task.id for task, _ in results}) == 1
        assert sum(created for _, created in results) == 1

    # -- listing --------------------------------------------------------------------------

    async def test_list_filters_by_status_and_type(
        self, store: TaskStore, clock: FakeClock
    ) -> None:
        review = await self.create(store)
        clock.advance(1)
        code = await self.create(store, type="code")
        clock.advance(1)
        cancelled = await self.create(store)
        await store.request_cancel(cancelled.id)
        listed = await store.list("key-1", status=TaskStatus.QUEUED)
        assert [t.id for t in listed.tasks] == [code.id, review.id]
        assert [t.id for t in (await store.list("key-1", type="code")).tasks] == [code.id]
        page = await store.list("key-1", status=TaskStatus.CANCELLED, type="review")
        assert [t.id for t in page.tasks] == [cancelled.id]
        assert await store.count_queued("key-1") == 2
        assert await store.count_queued("key-2") == 0

    async def test_cursor_pages_newest_first_without_gaps(
        self, store: TaskStore, clock: FakeClock
    ) -> None:
        created = []
        for i in range(8):
            created.append(await self.create(store))
            if i % 3 == 2:  # some tasks share a creation time: the id breaks the tie
                clock.advance(1)
        expected = sorted(created, key=lambda t: (t.created_at, t.id), reverse=True)
        seen: list[str] = []
        cursor = None
        for _ in range(5):
            page = await store.list("key-1", cursor=cursor, limit=3)
            seen.extend(t.id for t in page.tasks)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == [t.id for t in expected]
        assert (await store.list("key-1", limit=8)).next_cursor is None

    async def test_a_cursor_that_was_not_handed_out_is_refused(self, store: TaskStore) -> None:
        for cursor in ("not-a-cursor", "WzEsMl0", "e30"):
            with pytest.raises(InvalidCursor):
                await store.list("key-1", cursor=cursor)

    # -- cancelling -------------------------------------------------------------------------

    async def test_cancel_a_queued_task_at_once(self, store: TaskStore) -> None:
        task = await self.create(store)
        cancelled = await store.request_cancel(task.id, owner="key-1")
        assert cancelled is not None and cancelled.status is TaskStatus.CANCELLED
        assert cancelled.finished_at is not None and cancelled.error is not None
        assert cancelled.error.code == "cancelled"
        assert await store.claim("w1", lease_seconds=LEASE) == []

    async def test_cancel_a_running_task_flags_it_for_its_worker(self, store: TaskStore) -> None:
        task = await self.create(store)
        await store.claim("w1", lease_seconds=LEASE)
        flagged = await store.request_cancel(task.id)
        assert flagged is not None and flagged.status is TaskStatus.RUNNING
        assert flagged.cancel_requested
        beat = await store.heartbeat(task.id, "w1", lease_seconds=LEASE)
        assert beat.owned and beat.cancel_requested
        assert await store.finish(task.id, "w1", TaskStatus.CANCELLED)
        assert (await store.get(task.id)).status is TaskStatus.CANCELLED  # type: ignore[union-attr]

    async def test_cancel_a_finished_task_changes_nothing(self, store: TaskStore) -> None:
        task = await self.create(store)
        await store.claim("w1", lease_seconds=LEASE)
        await store.finish(task.id, "w1", TaskStatus.SUCCEEDED, result={"ok": True})
        after = await store.request_cancel(task.id)
        assert after is not None and after.status is TaskStatus.SUCCEEDED
        assert not after.cancel_requested and after.result == {"ok": True}
        assert await store.request_cancel("00000000-0000-0000-0000-000000000000") is None

    # -- claiming, leases and outcomes ------------------------------------------------------

    async def test_claim_takes_the_oldest_first_with_a_lease(
        self, store: TaskStore, clock: FakeClock
    ) -> None:
        tasks = []
        for _ in range(3):
            tasks.append(await self.create(store))
            clock.advance(1)
        claimed = await store.claim("w1", lease_seconds=LEASE, limit=2)
        assert [t.id for t in claimed] == [tasks[0].id, tasks[1].id]
        for task in claimed:
            assert (task.status, task.attempts, task.lease_owner) == (TaskStatus.RUNNING, 1, "w1")
            assert task.lease_expires_at == clock.now() + timedelta(seconds=LEASE)
            assert task.started_at == clock.now()
        assert [t.id for t in await store.claim("w2", lease_seconds=LEASE, limit=5)] == [
            tasks[2].id
        ]
        assert await store.claim("w3", lease_seconds=LEASE) == []

    async def test_an_expired_lease_is_claimed_again(
        self, store: TaskStore, clock: FakeClock
    ) -> None:
        task = await self.create(store)
        await store.claim("w1", lease_seconds=LEASE)
        clock.advance(LEASE - 1)
        assert await store.claim("w2", lease_seconds=LEASE) == []
        clock.advance(2)
        [again] = await store.claim("w2", lease_seconds=LEASE)
        assert (again.id, again.attempts, again.lease_owner) == (task.id, 2, "w2")
        assert not (await store.heartbeat(task.id, "w1", lease_seconds=LEASE)).owned
        assert not await store.finish(task.id, "w1", TaskStatus.SUCCEEDED, result={})
        assert not await store.release(task.id, "w1")
        assert (await store.get(task.id)).lease_owner == "w2"  # type: ignore[union-attr]

    async def test_a_heartbeat_renews_the_lease(self, store: TaskStore, clock: FakeClock) -> None:
        task = await self.create(store)
        await store.claim("w1", lease_seconds=LEASE)
        clock.advance(LEASE - 1)
        beat = await store.heartbeat(task.id, "w1", lease_seconds=LEASE)
        assert beat.owned and not beat.cancel_requested
        clock.advance(LEASE - 1)
        assert await store.claim("w2", lease_seconds=LEASE) == []
        stored = await store.get(task.id)
        assert stored is not None
        assert stored.lease_expires_at == clock.now() + timedelta(seconds=1)

    async def test_a_task_whose_worker_was_lost_too_often_fails(
        self, store: TaskStore, clock: FakeClock
    ) -> None:
        task = await self.create(store, max_attempts=2)
        for worker in ("w1", "w2"):
            assert len(await store.claim(worker, lease_seconds=LEASE)) == 1
            clock.advance(LEASE + 1)
        assert await store.claim("w3", lease_seconds=LEASE) == []
        failed = await store.get(task.id)
        assert failed is not None and failed.status is TaskStatus.FAILED
        assert failed.error is not None and failed.error.code == "worker_lost"
        assert "2 times" in failed.error.message and failed.finished_at == clock.now()

    async def test_a_task_past_its_deadline_fails_instead_of_running(
        self, store: TaskStore, clock: FakeClock
    ) -> None:
        late = await self.create(store, deadline_seconds=10.0)
        clock.advance(5)
        on_time = await self.create(store, deadline_seconds=10.0)
        clock.advance(6)
        assert [t.id for t in await store.claim("w1", lease_seconds=LEASE, limit=2)] == [on_time.id]
        failed = await store.get(late.id)
        assert failed is not None and failed.status is TaskStatus.FAILED
        assert failed.error is not None and failed.error.code == "deadline_exceeded"

    async def test_only_the_lease_holder_finishes(self, store: TaskStore) -> None:
        task = await self.create(store)
        await store.claim("w1", lease_seconds=LEASE)
        assert not await store.finish(task.id, "w2", TaskStatus.SUCCEEDED, result={"x": 1})
        assert (await store.get(task.id)).status is TaskStatus.RUNNING  # type: ignore[union-attr]
        assert await store.finish(task.id, "w1", TaskStatus.SUCCEEDED, result={"score": 90})
        assert not await store.finish(task.id, "w1", TaskStatus.FAILED)
        done = await store.get(task.id)
        assert done is not None and done.status is TaskStatus.SUCCEEDED
        assert done.result == {"score": 90} and done.error is None
        assert done.finished_at is not None and done.lease_expires_at is None

    async def test_a_failure_keeps_its_error(self, store: TaskStore) -> None:
        task = await self.create(store)
        await store.claim("w1", lease_seconds=LEASE)
        error = TaskError("rate_limit", "every target was rate limited")
        assert await store.finish(task.id, "w1", TaskStatus.FAILED, error=error)
        failed = await store.get(task.id)
        assert failed is not None and (failed.error, failed.result) == (error, None)
        with pytest.raises(ValueError, match="finished status"):
            await store.finish(task.id, "w1", TaskStatus.QUEUED)

    async def test_release_puts_the_task_back_and_gives_the_attempt_back(
        self, store: TaskStore
    ) -> None:
        task = await self.create(store)
        await store.claim("w1", lease_seconds=LEASE)
        assert not await store.release(task.id, "w2")
        assert await store.release(task.id, "w1")
        released = await store.get(task.id)
        assert released is not None and released.status is TaskStatus.QUEUED
        assert (released.attempts, released.lease_owner, released.lease_expires_at) == (
            0,
            None,
            None,
        )
        [again] = await store.claim("w2", lease_seconds=LEASE)
        assert (again.id, again.attempts) == (task.id, 1)

    async def test_release_of_a_task_being_cancelled_cancels_it(self, store: TaskStore) -> None:
        task = await self.create(store)
        await store.claim("w1", lease_seconds=LEASE)
        await store.request_cancel(task.id)
        assert await store.release(task.id, "w1")
        assert (await store.get(task.id)).status is TaskStatus.CANCELLED  # type: ignore[union-attr]

    # -- the race ---------------------------------------------------------------------------

    async def test_two_stores_and_twenty_claimers_claim_each_task_exactly_once(
        self, open_store: OpenStore, clock: FakeClock
    ) -> None:
        stores = [open_store(clock), open_store(clock)]
        tasks = [await self.create(stores[0]) for _ in range(100)]

        async def claimer(store: TaskStore, name: str) -> list[str]:
            mine: list[str] = []
            while claimed := await store.claim(name, lease_seconds=LEASE, limit=2):
                mine.extend(t.id for t in claimed)
                await asyncio.sleep(0)
            return mine

        results = await asyncio.gather(
            *(claimer(store, f"w{s}-{i}") for s, store in enumerate(stores) for i in range(10))
        )
        claimed = [task_id for ids in results for task_id in ids]
        assert sorted(claimed) == sorted(t.id for t in tasks)
        for task in (await stores[1].list(None, limit=200)).tasks:
            assert (task.status, task.attempts) == (TaskStatus.RUNNING, 1)
