"""OpenWhisk's error answers and the per-request context every answer carries.

Every non-2xx answer is ``{"error": <message>, "code": <transaction id>}``; every answer carries
``X-Request-ID`` (the transaction id, adopted from the client when it sent one) and the REST
API's CORS headers. Messages are OpenWhisk's exact strings (``ErrorResponse.scala Messages``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from bus.ids import new_transaction_id
from gateway.jsonio import json_response

log = logging.getLogger(__name__)

NOT_FOUND = "The requested resource does not exist."
ALREADY_EXISTS = "resource already exists"
CONFLICT = "Concurrent modification to resource detected."
NOT_IN_COLLECTION = "Resource by this name exists but is not in this collection."
FORBIDDEN = "The supplied authentication is not authorized to access this resource."
AUTH_MISSING = "The resource requires authentication, which was not supplied with the request"
AUTH_INVALID = "The supplied authentication is invalid"
UNAVAILABLE = (
    "The server is currently unavailable (because it is overloaded or down for maintenance)."
)
INTERNAL = "There was an internal server error."
PARAMETERS_NOT_ALLOWED = (
    "Request defines parameters that are not allowed (e.g., reserved properties)."
)

WWW_AUTHENTICATE = {"WWW-Authenticate": 'Basic realm="OpenWhisk secure realm"'}

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, DELETE, POST, PUT, HEAD",
    "Access-Control-Allow-Headers": (
        "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"
    ),
}

WEB_PREFIX = "/api/v1/web/"
# Where the application counts the status of every response it gives (gateway.metrics).
COUNT_RESPONSE = web.AppKey("count_response", Callable[[int], None])

TRANSACTION_ID = web.RequestKey("transaction_id", str)

# A client-chosen request id is echoed in headers and logs: keep it to a safe, short alphabet.
_ADOPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ApiError(Exception):
    """Raised anywhere while handling a request; rendered as OpenWhisk's error JSON."""

    def __init__(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def malformed(detail: str) -> ApiError:
    """Pekko's wording for a body that could not be read as the expected JSON."""
    return ApiError(400, f"The request content was malformed:\n{detail}")


def too_large(size: int, allowed: int) -> ApiError:
    return ApiError(413, f"Request larger than allowed: {size} > {allowed} bytes.")


def transaction_id(request: web.Request) -> str:
    return request[TRANSACTION_ID]


def error_response(
    status: int, message: str, tid: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return json_response({"error": message, "code": tid}, status=status, headers=headers)


def _adopt_request_id(supplied: str | None) -> str:
    if supplied and _ADOPTABLE_REQUEST_ID.match(supplied):
        return supplied
    return new_transaction_id()


def _from_http_exception(exc: web.HTTPException, request: web.Request, tid: str) -> web.Response:
    """aiohttp's own answers (no route, wrong method, body too big) in OpenWhisk's shape."""
    headers: dict[str, str] = {}
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        headers["Allow"] = allowed
        message = f"HTTP method not allowed, supported methods: {allowed}"
    elif isinstance(exc, web.HTTPNotFound):
        message = NOT_FOUND
    elif isinstance(exc, web.HTTPRequestEntityTooLarge):
        size = request.content_length
        limit = request.client_max_size
        message = (
            f"Request larger than allowed: {size} > {limit} bytes." if size
            else f"Request larger than allowed: more than {limit} bytes."
        )
    else:
        message = exc.reason
    return error_response(exc.status, message, tid, headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: transaction id, CORS, and every failure as error JSON."""
    tid = _adopt_request_id(request.headers.get("X-Request-ID"))
    request[TRANSACTION_ID] = tid
    response: web.StreamResponse
    # Web actions answer OPTIONS and set CORS themselves (``web-custom-options``).
    is_web = request.path.startswith(WEB_PREFIX)
    if request.method == "OPTIONS" and request.path.startswith("/api/v1") and not is_web:
        # CORS preflight: answered here for every API path, without authentication.
        response = web.Response(status=200)
    else:
        try:
            response = await handler(request)
        except ApiError as exc:
            headers = exc.headers
            if headers and request.headers.get("X-Requested-With") == "XMLHttpRequest":
                # A script's request (the dashboard's) gets its 401 without the Basic
                # challenge: a browser would otherwise open its own password dialog.
                headers = {k: v for k, v in headers.items() if k != "WWW-Authenticate"}
            response = error_response(exc.status, exc.message, tid, headers)
        except web.HTTPException as exc:
            response = _from_http_exception(exc, request, tid)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unhandled error in %s %s (tid %s)", request.method, request.path, tid)
            response = error_response(500, INTERNAL, tid)
    response.headers["X-Request-ID"] = tid
    count = request.app.get(COUNT_RESPONSE)
    if count is not None:
        count(response.status)
    if not is_web:
        response.headers.update(CORS_HEADERS)
    return response
