"""``GET /dashboard``: the operators' page (breakers, retries, failures), for admins.

A browser cannot send a Bearer header when it navigates, so the page answers 401 with a
Basic challenge: the browser asks for credentials (any user name, an admin API key or the
admin token as password) and then sends them on the page's own requests to ``/v1/admin``
(see :mod:`backend.api.auth`). The page's assets (``/dashboard/static/...``) are plain code,
served to anyone; everything is served by Bulwark itself (no CDN), so it works offline.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from backend.api.auth import Credentials, current_principal
from backend.api.deps import KeyServiceDep
from backend.api.errors import error_response
from backend.services.errors import NotFoundError, UnauthorizedError
from backend.services.keys import KeyService

ASSETS = Path(__file__).resolve().parent.parent / "dashboard"
STATIC: dict[str, str] = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
BASIC_CHALLENGE = 'Basic realm="Bulwark dashboard", charset="UTF-8"'
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}
PAGE_HEADERS = {
    **HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(tags=["dashboard"])


@cache
def asset(name: str) -> bytes:
    """One file of the page, read once."""
    return (ASSETS / name).read_bytes()


@router.get("/dashboard", include_in_schema=False)
async def dashboard(request: Request, keys: KeyServiceDep, credentials: Credentials) -> Response:
    try:
        principal = await current_principal(request, keys, credentials)
    except UnauthorizedError as exc:
        challenge = {"WWW-Authenticate": BASIC_CHALLENGE, "Cache-Control": "no-store"}
        return error_response(401, exc.code, exc.message, challenge)
    KeyService.require_admin(principal)
    return HTMLResponse(asset("index.html"), headers=PAGE_HEADERS)


@router.get("/dashboard/static/{name}", include_in_schema=False)
async def dashboard_static(name: str) -> Response:
    media_type = STATIC.get(name)
    if media_type is None:
        raise NotFoundError(f"no dashboard asset {name!r}")
    return Response(asset(name), media_type=media_type, headers=HEADERS)


__all__ = ["router"]
