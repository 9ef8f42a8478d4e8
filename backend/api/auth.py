"""Who is calling: ``Authorization: Bearer <key>``, checked by the key service. Routes take
:data:`PrincipalDep` (any valid key) or :data:`AdminDep` (admin key or admin token).

The dashboard page is opened by a browser, which cannot send a Bearer header when it
navigates: ``Authorization: Basic`` is accepted too, with an API key or the admin token as
the password (the user name is ignored), and the browser then sends it on the page's own
requests. Because a browser adds those credentials to *any* request to the origin, an unsafe
request (POST, ...) authenticated by Basic must carry ``X-Bulwark-Dashboard: 1``, a header a
cross-site form cannot set and a cross-site script cannot send without a CORS preflight, or
it is refused with 403. Bearer requests are unaffected."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.api.deps import KeyServiceDep
from backend.services.errors import ForbiddenError, UnauthorizedError
from backend.services.keys import KeyService, Principal

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key (`bulwark keys create`), or the admin token for admin routes.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

DASHBOARD_HEADER = "X-Bulwark-Dashboard"
"""The header (value ``1``) an unsafe request authenticated by Basic must carry."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def basic_password(authorization: str | None) -> str | None:
    """The password of an ``Authorization: Basic`` header; ``None`` when the header is
    missing or of another scheme. A malformed Basic header is refused (401)."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise UnauthorizedError("malformed Basic credentials") from None
    _, colon, password = decoded.partition(":")
    if not colon:
        raise UnauthorizedError("malformed Basic credentials")
    return password


async def current_principal(
    request: Request, keys: KeyServiceDep, credentials: Credentials
) -> Principal:
    if credentials is not None:
        return await keys.authenticate(credentials.credentials)
    password = basic_password(request.headers.get("Authorization"))
    if password is None:
        return await keys.authenticate(None)
    if request.method not in SAFE_METHODS and request.headers.get(DASHBOARD_HEADER) != "1":
        raise ForbiddenError(
            f"a request authenticated by Basic that changes something needs '{DASHBOARD_HEADER}: 1'"
        )
    return await keys.authenticate(password)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


async def admin_principal(principal: PrincipalDep) -> Principal:
    return KeyService.require_admin(principal)


AdminDep = Annotated[Principal, Depends(admin_principal)]

__all__ = [
    "DASHBOARD_HEADER",
    "AdminDep",
    "PrincipalDep",
    "admin_principal",
    "basic_password",
    "current_principal",
]
