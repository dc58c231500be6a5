"""HTTP Basic authentication (``uuid:key``) with a short in-process cache, and the namespace
check for ``/namespaces/{ns}/...`` paths (``_`` or the caller's own namespace)."""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from bus.store import Store
from gateway.errors import AUTH_INVALID, AUTH_MISSING, FORBIDDEN, WWW_AUTHENTICATE, ApiError

PROTECTED_PREFIX = "/api/v1/namespaces"


@dataclass(frozen=True)
class Identity:
    namespace: str
    uuid: str
    key: str

    @property
    def api_key(self) -> str:
        return f"{self.uuid}:{self.key}"


IDENTITY = web.RequestKey("identity", Identity)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


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


class AuthCache:
    """Namespace lookups cached for a few seconds, so the hot path skips Redis. Failures are
    cached briefly too (keyed by the whole credential), so a client retrying a bad key does
    not hammer Redis, and a key created a moment ago becomes valid quickly."""

    def __init__(
        self, store: Store, *, ttl_s: float = 5.0, negative_ttl_s: float = 1.0,
        max_entries: int = 10_000,
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._max_entries = max_entries
        self._entries: dict[tuple[str, str], tuple[float, Identity | None]] = {}

    async def identify(self, uuid: str, key: str) -> Identity | None:
        now = time.monotonic()
        credential = (uuid, key)
        cached = self._entries.get(credential)
        if cached is not None and cached[0] > now:
            return cached[1]
        ns = await self._store.authenticate(uuid, key)
        found = Identity(namespace=ns, uuid=uuid, key=key) if ns is not None else None
        if len(self._entries) >= self._max_entries:
            self._evict(now)
        ttl = self._ttl_s if found is not None else self._negative_ttl_s
        self._entries[credential] = (now + ttl, found)
        return found

    def _evict(self, now: float) -> None:
        expired = [c for c, (until, _) in self._entries.items() if until <= now]
        for credential in expired:
            del self._entries[credential]
        if len(self._entries) >= self._max_entries:  # all fresh: drop the oldest half
            for credential in list(self._entries)[: self._max_entries // 2]:
                del self._entries[credential]


def auth_middleware(cache: AuthCache) -> Middleware:
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
        credentials = parse_basic(request.headers.get("Authorization"))
        if credentials is None:
            raise ApiError(401, AUTH_MISSING, WWW_AUTHENTICATE)
        found = await cache.identify(*credentials)
        if found is None:
            raise ApiError(401, AUTH_INVALID, WWW_AUTHENTICATE)
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
