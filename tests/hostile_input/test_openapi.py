"""The OpenAPI document: it describes exactly the routes the application registers (so it
cannot drift), it is a valid OpenAPI 3 document, and the gateway serves it where the API root
says it is."""

from __future__ import annotations

import json

import aiohttp
import schemathesis

from bus.broker import Broker
from bus.config import Settings
from bus.store import Store
from gateway.app import build_app
from gateway.openapi import WEB_METHODS, build_document
from tests.cluster_fixtures import Cluster


def _registered_routes(settings: Settings, store: Store, broker: Broker) -> set[tuple[str, str]]:
    app = build_app(settings, store, broker)
    routes: set[tuple[str, str]] = set()
    for route in app.router.routes():
        assert route.resource is not None
        path = route.resource.canonical
        methods = WEB_METHODS if route.method == "*" else (route.method,)
        routes.update((method, path) for method in methods)
    return routes


def _documented_routes() -> set[tuple[str, str]]:
    return {(method.upper(), path)
            for path, operations in build_document()["paths"].items()
            for method in operations}


async def test_every_route_is_documented_and_every_documented_route_exists(
    settings: Settings, store: Store, broker: Broker
) -> None:
    registered = _registered_routes(settings, store, broker)
    documented = _documented_routes()
    # aiohttp registers HEAD with every GET (GET without the body); the document leaves those
    # out, except on the web action route, which takes HEAD itself.
    implied_heads = {("HEAD", path) for method, path in registered if method == "GET"}
    assert registered - implied_heads - documented == set(), "routes missing from the document"
    assert documented - registered == set(), "documented routes the application lacks"
    assert {("HEAD", path) for method, path in documented if method == "HEAD"} <= registered


def test_document_is_valid_openapi() -> None:
    document = build_document()
    assert document["openapi"].startswith("3.")
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()  # raises on a document that breaks the OpenAPI 3.0 meta-schema
    every_ref = json.dumps(document).count('"$ref"')
    assert every_ref > 0
    # Each error answer is OpenWhisk's error JSON.
    error_schema = document["components"]["schemas"]["ErrorResponse"]
    assert error_schema["required"] == ["error", "code"]


async def test_gateway_serves_it_where_the_root_says(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    async with http.get("/api/v1") as reply:
        assert reply.status == 200
        docs_path = (await reply.json())["swagger_paths"]["api-docs"]
    assert docs_path == "/api-docs"
    # No credentials needed, as for the API root.
    async with aiohttp.ClientSession(base_url=cluster.api_host) as anonymous, \
            anonymous.get("/api/v1" + docs_path) as reply:
        assert reply.status == 200
        assert reply.content_type == "application/json"
        assert await reply.json() == build_document()
