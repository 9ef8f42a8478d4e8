"""``/v1/admin``: operators see and operate circuit breakers and read the call history.

Breaker keys are targets (``provider:model``) and model names may contain ``/``, so the key
is a ``{key:path}`` parameter; ``.../reset`` and ``.../open`` are POST routes, which a GET of
the same path never reaches.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime

from backend.api.auth import AdminDep
from backend.api.deps import BreakerServiceDep, HistoryServiceDep, StatsServiceDep
from backend.api.routes.responses import errors
from backend.api.schemas import (
    BreakerDetailOut,
    BreakerEventOut,
    BreakerListOut,
    BreakerOut,
    CallListOut,
    CallOut,
    StatsOut,
)
from backend.services.history import MAX_PAGE_SIZE, CallFilter

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=errors(401, 403, 422, 503))

Filter = Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")]
BreakerKey = Annotated[
    str,
    Path(
        max_length=255,
        pattern=r"^[^:\x00-\x1f\x7f]+:[^\x00-\x1f\x7f]+$",
        description="The target, provider:model (the model may contain '/')",
        examples=["openai:gpt-4o-mini"],
    ),
]


@router.get("/breakers", summary="Every breaker with its state and counters")
async def list_breakers(_: AdminDep, breakers: BreakerServiceDep) -> BreakerListOut:
    return BreakerListOut(breakers=[BreakerOut.model_validate(b) for b in await breakers.list()])


@router.get(
    "/breakers/{key:path}",
    summary="One breaker and its recent events, newest first",
    responses=errors(404, 422),
)
async def get_breaker(
    key: BreakerKey,
    _: AdminDep,
    breakers: BreakerServiceDep,
    events: Annotated[int, Query(ge=0, le=500, description="How many events")] = 50,
) -> BreakerDetailOut:
    detail = await breakers.get(key, events=events)
    return BreakerDetailOut(
        breaker=BreakerOut.model_validate(detail.breaker),
        events=[BreakerEventOut.model_validate(e) for e in detail.events],
    )


@router.post(
    "/breakers/{key:path}/reset",
    summary="Close a breaker, counters zeroed (recorded with your key's name)",
    responses=errors(422),
)
async def reset_breaker(
    key: BreakerKey, admin: AdminDep, breakers: BreakerServiceDep
) -> BreakerOut:
    return BreakerOut.model_validate(await breakers.reset(key, actor=admin.name))


@router.post(
    "/breakers/{key:path}/open",
    summary="Force a breaker open until it is reset (recorded with your key's name)",
    responses=errors(422),
)
async def open_breaker(key: BreakerKey, admin: AdminDep, breakers: BreakerServiceDep) -> BreakerOut:
    return BreakerOut.model_validate(await breakers.force_open(key, actor=admin.name))


@router.get(
    "/calls",
    summary="LLM call history across tasks, newest first",
    description="`target` matches calls that tried the target on any attempt.",
    responses=errors(422),
)
async def list_calls(
    _: AdminDep,
    history: HistoryServiceDep,
    target: Filter = None,
    agent: Filter = None,
    outcome: Filter = None,
    category: Filter = None,
    task_id: Filter = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    cursor: Filter = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> CallListOut:
    filters = CallFilter(target, agent, outcome, category, task_id, since, until)
    page = await history.calls(filters, cursor=cursor, limit=limit)
    return CallListOut(
        calls=[CallOut.model_validate(c) for c in page.calls], next_cursor=page.next_cursor
    )


@router.get("/stats", summary="Aggregates per target over a window", responses=errors(422))
async def get_stats(
    _: AdminDep,
    stats: StatsServiceDep,
    window: Annotated[int, Query(ge=1, le=30 * 86400, description="Seconds back from now")] = 3600,
) -> StatsOut:
    return StatsOut.model_validate(await stats.stats(window))


__all__ = ["router"]
