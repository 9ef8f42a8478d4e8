"""``/v1/tasks``: clients submit tasks and follow their own.

This module does not use ``from __future__ import annotations``: the request body's type is
built per registry when the router is made, and FastAPI must see it as a real object.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Response

from agents.registry import AgentRegistry
from backend.api.auth import PrincipalDep
from backend.api.deps import TaskServiceDep
from backend.api.routes.responses import errors
from backend.api.schemas import CallOut, TaskCallsOut, TaskListOut, TaskOut, task_request_type
from backend.services.tasks import MAX_PAGE_SIZE, MAX_WAIT_SECONDS
from backend.tasks.model import TaskStatus

TaskId = Annotated[str, Path(description="The task's id, as returned on submission")]
PrintableText = Annotated[str, Query(max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")]


def tasks_router(registry: AgentRegistry, *, max_deadline: float) -> APIRouter:
    """The router, with ``POST /v1/tasks`` accepting exactly the task types of ``registry``."""
    task_request: Any = task_request_type(registry, max_deadline)
    router = APIRouter(prefix="/v1/tasks", tags=["tasks"], responses=errors(401, 422, 503))

    @router.post(
        "",
        status_code=202,
        summary="Submit a task",
        description="Answers 202 with the new task. With an `Idempotency-Key`, repeating the "
        "same request answers 200 with the task it created (header `Idempotent-Replayed: "
        "true`); the same key with another body answers 409.",
        responses={
            200: {"model": TaskOut, "description": "Replayed: the task this key created"},
            **errors(409, 413, 422, 429),
        },
    )
    async def submit_task(
        body: Annotated[task_request, Body()],
        principal: PrincipalDep,
        tasks: TaskServiceDep,
        response: Response,
        idempotency_key: Annotated[
            str | None, Header(max_length=255, pattern=r"^[\x21-\x7e]+$")
        ] = None,
    ) -> TaskOut:
        task, created = await tasks.submit(
            principal.id,
            body.type,
            body.input.model_dump(mode="json", exclude_unset=True),
            deadline_seconds=body.deadline_seconds,
            idempotency_key=idempotency_key,
        )
        response.headers["Location"] = f"/v1/tasks/{task.id}"
        if not created:
            response.status_code = 200
            response.headers["Idempotent-Replayed"] = "true"
        return TaskOut.model_validate(task)

    @router.get("", summary="List your tasks, newest first", responses=errors(422))
    async def list_tasks(
        principal: PrincipalDep,
        tasks: TaskServiceDep,
        status: TaskStatus | None = None,
        type: PrintableText | None = None,
        cursor: PrintableText | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    ) -> TaskListOut:
        page = await tasks.list(
            principal.id, status=status, task_type=type, cursor=cursor, limit=limit
        )
        return TaskListOut.model_validate(page, from_attributes=True)

    @router.get(
        "/{task_id}",
        summary="One of your tasks",
        description=f"`wait` long-polls: the answer comes when the task finishes or after "
        f"`wait` seconds (at most {MAX_WAIT_SECONDS:g}), whichever is first.",
        responses=errors(404, 422),
    )
    async def get_task(
        task_id: TaskId,
        principal: PrincipalDep,
        tasks: TaskServiceDep,
        wait: Annotated[float, Query(ge=0, allow_inf_nan=False)] = 0.0,
    ) -> TaskOut:
        return TaskOut.model_validate(await tasks.get(principal.id, task_id, wait=wait))

    @router.post(
        "/{task_id}/cancel",
        summary="Cancel one of your tasks",
        description="A queued task is cancelled at once; a running one gets "
        "`cancel_requested` and its worker stops it. A finished task answers 409.",
        responses=errors(404, 409),
    )
    async def cancel_task(
        task_id: TaskId, principal: PrincipalDep, tasks: TaskServiceDep
    ) -> TaskOut:
        return TaskOut.model_validate(await tasks.cancel(principal.id, task_id))

    @router.get(
        "/{task_id}/calls",
        summary="The LLM calls of one of your tasks, each with its attempts",
        responses=errors(404),
    )
    async def task_calls(
        task_id: TaskId, principal: PrincipalDep, tasks: TaskServiceDep
    ) -> TaskCallsOut:
        calls = await tasks.calls(principal.id, task_id)
        return TaskCallsOut(task_id=task_id, calls=[CallOut.model_validate(c) for c in calls])

    return router


__all__ = ["tasks_router"]
