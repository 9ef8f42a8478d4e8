"""``GET /metrics``: Prometheus text format; open unless ``BULWARK_METRICS_TOKEN`` is set."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from backend.api.deps import SettingsDep
from backend.api.errors import error_response
from backend.metrics import metrics_authorized, render_metrics

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, settings: SettingsDep) -> Response:
    """A plain ``def``: reading the multiprocess files is blocking I/O, so it runs in the
    thread pool."""
    if not metrics_authorized(settings, request.headers.get("authorization")):
        return error_response(
            401,
            "unauthorized",
            "a valid metrics token is required",
            {"WWW-Authenticate": "Bearer"},
        )
    body, content_type = render_metrics(
        request.app.state.metrics.registry, accept=request.headers.get("accept")
    )
    return Response(body, headers={"Content-Type": content_type})


__all__ = ["router"]
