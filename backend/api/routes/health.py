"""Liveness and readiness, open to anyone."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import HealthServiceDep
from backend.api.routes.responses import errors
from backend.api.schemas import StatusOut

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> StatusOut:
    return StatusOut(status="ok")


@router.get("/readyz", summary="Readiness: the database answers", responses=errors(503))
async def readyz(health: HealthServiceDep) -> StatusOut:
    await health.check_database()
    return StatusOut(status="ready")


__all__ = ["router"]
