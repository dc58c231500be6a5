"""Administrators: keys of the namespaces named in ``admin_namespaces`` (OpenWhisk's
``whisk.system`` by default). They read the cluster's metrics and every namespace's view."""

from __future__ import annotations

from aiohttp import web

from gateway.auth import IDENTITY, Identity
from gateway.errors import AUTH_MISSING, FORBIDDEN, WWW_AUTHENTICATE, ApiError
from gateway.state import AUTHENTICATOR, SETTINGS


def is_admin(request: web.Request, identity: Identity) -> bool:
    return identity.namespace in request.app[SETTINGS].admin_namespaces


async def require_admin(request: web.Request) -> Identity:
    """The caller of a route outside ``/api/v1/namespaces`` (which the middleware leaves
    alone) if it presented an administrator's key; else 401 or 403."""
    identity = request.get(IDENTITY) or await request.app[AUTHENTICATOR].from_request(request)
    if identity is None:
        raise ApiError(401, AUTH_MISSING, WWW_AUTHENTICATE)
    if not is_admin(request, identity):
        raise ApiError(403, FORBIDDEN)
    return identity
