"""Request steps every entity collection shares: listing with ``limit``/``skip``/``count``,
writing a document with compare-and-set against the version read earlier, and the answer for a
name the collection does not hold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from bus.store import NameTaken
from gateway.auth import namespace
from gateway.errors import ALREADY_EXISTS, CONFLICT, NOT_FOUND, NOT_IN_COLLECTION, ApiError
from gateway.jsonio import json_response
from gateway.state import LIMITS, STORE
from gateway.validation import list_window

E = TypeVar("E", bound=BaseModel)


async def list_response(
    request: web.Request, collection: str, model: type[E],
    summary: Callable[[E], dict[str, Any]],
) -> web.Response:
    """The caller's entities newest first (``[summary...]``), or ``{collection: N}``."""
    ns = namespace(request)
    window = list_window(request, collection, request.app[LIMITS])
    store = request.app[STORE]
    if window.count:
        return json_response({collection: await store.count_entities(collection, ns)})
    docs = await store.list_entities(collection, ns, model, skip=window.skip, limit=window.limit)
    return json_response([summary(doc) for doc in docs])


def refuse_overwrite(existing: BaseModel | None, overwrite: bool) -> None:
    if existing is not None and not overwrite:
        raise ApiError(409, ALREADY_EXISTS)


async def store_document(
    request: web.Request, collection: str, ns: str, name: str, doc: BaseModel, updated: int,
    replaces: BaseModel | None,
) -> None:
    """Create, or replace exactly the document read earlier: a concurrent writer makes this a
    409 rather than a lost update."""
    try:
        stored = await request.app[STORE].put_entity(
            collection, ns, name, doc, updated, replaces=replaces
        )
    except NameTaken:
        raise ApiError(409, NOT_IN_COLLECTION) from None
    if not stored:
        raise ApiError(409, CONFLICT)


async def not_found(request: web.Request, collection: str, ns: str, name: str) -> ApiError:
    """404, or OpenWhisk's 409 when the name is another collection's: names are unique
    across a namespace's actions, triggers, rules and packages."""
    if await request.app[STORE].entity_elsewhere(collection, ns, name):
        return ApiError(409, NOT_IN_COLLECTION)
    return ApiError(404, NOT_FOUND)
