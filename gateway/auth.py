"""HTTP Basic authentication (``uuid:key``) and the namespace check for
``/namespaces/{ns}/...`` paths (``_`` or the caller's own namespace).

A cached valid key costs no Redis call (``gateway.auth_cache``); an uncached one costs one read
and one HMAC; a failure is counted and, past its limit, refused with 429
(``gateway.auth_failures``)."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

from aiohttp import web

from bus.store import Store
from gateway.auth_cache import AuthCache, Identity
from gateway.auth_failures import AuthFailureLimiter
from gateway.errors import AUTH_INVALID, AUTH_MISSING, FORBIDDEN, WWW_AUTHENTICATE, ApiError

PROTECTED_PREFIX = "/api/v1/namespaces"

IDENTITY = web.RequestKey("identity", Identity)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

__all__ = ["Authenticator", "Identity", "auth_middleware", "identity", "namespace"]


def identity(request: web.Request) -> Identity:
    return request[IDENTITY]


def namespace(request: web.Request) -> str:
    """The caller's namespace (what ``_`` or the explicit ``{ns}`` in the path resolved to)."""
    return request[IDENTITY].namespace


# Handlers that may be asked about another namespace (reads of public packages and their
# actions); they check the entitlement themselves, against the package they resolve.
_OTHER_NAMESPACE_HANDLERS: set[object] = set()


def reads_other_namespaces(handler: Handler) -> Handler:
    """Mark a handler that serves ``/namespaces/{ns}/...`` for namespaces not the caller's."""
    _OTHER_NAMESPACE_HANDLERS.add(handler)
    return handler


def path_namespace(request: web.Request) -> str:
    """The ``{ns}`` of the path with ``_`` resolved to the caller's namespace."""
    requested = request.match_info.get("ns", "_")
    return request[IDENTITY].namespace if requested == "_" else requested


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """``(uuid, key)`` from an Authorization header; None if no Basic credentials were sent.
    Credentials that cannot be decoded are invalid, not missing."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except ValueError:  # bad base64, bad UTF-8, or bytes that were not ASCII in the header
        raise ApiError(401, AUTH_INVALID, WWW_AUTHENTICATE) from None
    uuid, sep, key = decoded.partition(":")
    if not sep:
        raise ApiError(401, AUTH_INVALID, WWW_AUTHENTICATE)
    return uuid, key


class Authenticator:
    """Turns presented credentials into an Identity, or the 401/429 answer."""

    def __init__(self, store: Store, cache: AuthCache, limiter: AuthFailureLimiter) -> None:
        self._store = store
        self.cache = cache
        self._limiter = limiter

    async def identify(self, uuid: str, key: str, client: str) -> Identity:
        found = self.cache.lookup(uuid, key)
        if isinstance(found, Identity):
            return found
        if found is None:
            generation = self.cache.generation
            stored = await self._store.keys.authenticate(uuid, key)
            found = self.cache.remember(uuid, key, stored, generation)
            if found is not None:
                return found
        refusal = await self._limiter.failed(client, uuid)
        if refusal is not None:
            raise ApiError(429, refusal.message, {"Retry-After": str(refusal.retry_after_s)})
        raise ApiError(401, AUTH_INVALID, WWW_AUTHENTICATE)

    async def from_request(self, request: web.Request) -> Identity | None:
        """The caller, None if no credentials were sent; invalid ones raise."""
        credentials = parse_basic(request.headers.get("Authorization"))
        if credentials is None:
            return None
        return await self.identify(*credentials, client=request.remote or "local")


def auth_middleware(authenticator: Authenticator) -> Middleware:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        match_info = request.match_info
        resource = match_info.route.resource
        # Unknown routes and wrong methods fall through to their 404/405 answers.
        if (
            match_info.http_exception is not None
            or resource is None
            or not resource.canonical.startswith(PROTECTED_PREFIX)
        ):
            return await handler(request)
        found = await authenticator.from_request(request)
        if found is None:
            raise ApiError(401, AUTH_MISSING, WWW_AUTHENTICATE)
        requested = match_info.get("ns")
        if (
            requested is not None
            and requested not in ("_", found.namespace)
            and match_info.handler not in _OTHER_NAMESPACE_HANDLERS
        ):
            raise ApiError(403, FORBIDDEN)
        request[IDENTITY] = found
        return await handler(request)

    return authenticate
