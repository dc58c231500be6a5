"""``/api/v1/namespaces/{ns}/activations[/{id}[/result|/logs]]``: activation records as the
invoker wrote them, listed newest first."""

from __future__ import annotations

from aiohttp import web

from bus.ids import is_activation_id
from bus.models import ActivationRecord
from gateway.auth import namespace
from gateway.errors import NOT_FOUND, ApiError
from gateway.jsonio import json_response
from gateway.state import LIMITS, SETTINGS, STORE, WATCH
from gateway.validation import INT64, bool_param, is_entity_name, java_int, list_window

COLLECTION = "activations"
_ACTIVATION_ID_LENGTH = 32


def _name_filter(request: web.Request) -> str | None:
    """``action`` or ``package/action``."""
    raw = request.query.get("name")
    if raw is None or raw == "":
        return None
    segments = raw.split("/")
    if len(segments) > 2 or not all(is_entity_name(s) for s in segments):
        raise ApiError(
            400, f"Parameter may be a 'simple' name or 'package-name/simple' name: {raw}"
        )
    return raw


def _epoch_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    value = java_int(raw, INT64)  # OpenWhisk: Instant.ofEpochMilli(raw.toLong)
    if value is None:
        raise ApiError(400, f"Parameter is not a valid value for epoch seconds: {raw}")
    return value


async def list_activations(request: web.Request) -> web.Response:
    ns = namespace(request)
    window = list_window(request, COLLECTION, request.app[LIMITS])
    docs = bool_param(request, "docs")
    if docs and window.count:
        raise ApiError(400, "The parameter 'docs' is not permitted with 'count'.")
    name = _name_filter(request)
    since = _epoch_param(request, "since")
    upto = _epoch_param(request, "upto")
    store = request.app[STORE]
    if window.count:
        count = await store.count_records(ns, name=name, since=since, upto=upto)
        return json_response({COLLECTION: count})
    records = await store.list_records(
        ns, name=name, skip=window.skip, limit=window.limit, since=since, upto=upto
    )
    return json_response([r.to_api() if docs else r.summary() for r in records])


def _activation_id(request: web.Request) -> str:
    activation_id = request.match_info["activation_id"]
    if len(activation_id) != _ACTIVATION_ID_LENGTH:
        raise ApiError(
            400,
            f"Activation id length is {len(activation_id)} but must be {_ACTIVATION_ID_LENGTH}.",
        )
    if not is_activation_id(activation_id):
        raise ApiError(400, "The activation id is not valid.")
    return activation_id


def _wait_param(request: web.Request) -> float:
    """``?wait=<ms>`` (a Funtainer extension): how long to wait for a record not written yet,
    at most as long as a blocking invoke waits (a longer wait is cut to that)."""
    raw = request.query.get("wait")
    if raw is None:
        return 0.0
    value = java_int(raw, INT64)
    if value is None or value < 0:
        raise ApiError(400, "Wait must be a number of milliseconds.")
    return min(value, request.app[SETTINGS].max_blocking_wait_ms) / 1000


async def _record(request: web.Request) -> ActivationRecord:
    ns = namespace(request)
    activation_id = _activation_id(request)
    store = request.app[STORE]

    async def lookup() -> ActivationRecord | None:
        # A record of another namespace is as absent as a missing one (no existence leak);
        # the store looks it up through the caller's own index, so it also takes as long.
        record = await store.get_record_of(ns, activation_id)
        return record if record is not None and record.namespace.split("/", 1)[0] == ns else None

    record = await request.app[WATCH].wait(ns, activation_id, _wait_param(request), lookup)
    if record is None:
        raise ApiError(404, NOT_FOUND)
    return record


async def get_activation(request: web.Request) -> web.Response:
    return json_response((await _record(request)).to_api())


async def get_result(request: web.Request) -> web.Response:
    response = (await _record(request)).response.to_api()
    keys = ("result", "success", "status", "size")
    body = {key: response[key] for key in keys if key in response}
    return json_response(body)


async def get_logs(request: web.Request) -> web.Response:
    return json_response({"logs": (await _record(request)).logs})
