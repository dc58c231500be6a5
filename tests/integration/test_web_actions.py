"""Web actions over real HTTP: ``/api/v1/web/guest/default/<action>.<ext>``, called without
credentials the way a browser would."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.cluster_fixtures import Cluster
from tests.integration.conftest import BACKEND_NEUTRAL

ACTIONS = "/api/v1/namespaces/_/actions"
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff\xfe binary"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def anonymous(cluster: Cluster) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=cluster.api_host) as s:
        yield s


async def _web_action(
    http: aiohttp.ClientSession, code: str, *, annotations: dict[str, Any] | None = None
) -> str:
    name = _name("web")
    marks = {"web-export": True, **(annotations or {})}
    body = {"exec": {"kind": "python:3.11", "code": code},
            "annotations": [{"key": k, "value": v} for k, v in marks.items()]}
    async with http.put(f"{ACTIONS}/{name}", json=body) as resp:
        assert resp.status == 200, await resp.text()
    return f"/api/v1/web/guest/default/{name}"


ECHO = "def main(args):\n    return args\n"
HTTP_ANSWER = '''
def main(args):
    return {"statusCode": 201,
            "headers": {"Content-Type": "application/json", "Set-Cookie": ["a=1", "b=2"],
                        "X-Count": 3},
            "body": {"got": args.get("name"), "x": args.get("x")}}
'''


async def test_http_extension_status_headers_and_merged_params(
    http: aiohttp.ClientSession, anonymous: aiohttp.ClientSession
) -> None:
    url = await _web_action(http, HTTP_ANSWER)
    async with anonymous.post(url + ".http", params={"name": "Jane"}, json={"x": 1}) as resp:
        assert resp.status == 201
        assert resp.headers.getall("Set-Cookie") == ["a=1", "b=2"]
        assert resp.headers["X-Count"] == "3"
        assert resp.headers["Content-Type"].startswith("application/json")
        assert len(resp.headers["x-openwhisk-activation-id"]) == 32
        assert await resp.json() == {"got": "Jane", "x": 1}
    async with anonymous.get(url, params={"name": "Bo"}) as resp:  # no extension: .http
        assert resp.status == 201 and (await resp.json())["got"] == "Bo"


async def test_json_extension_returns_the_whole_result_with_ow_inputs(
    http: aiohttp.ClientSession, anonymous: aiohttp.ClientSession
) -> None:
    url = await _web_action(http, ECHO)
    async with anonymous.put(url + ".json?q=1", json={"q": 2, "b": True},
                             headers={"X-Thing": "yes"}) as resp:
        assert resp.status == 200, await resp.text()
        args = await resp.json()
    assert args["q"] == 2 and args["b"] is True  # the body wins over the query
    assert args["__ow_method"] == "put" and args["__ow_path"] == ""
    assert args["__ow_headers"]["x-thing"] == "yes"
    assert "__ow_user" not in args
    async with anonymous.post(url + ".json", data=b"plain words",
                              headers={"Content-Type": "text/plain"}) as resp:
        assert (await resp.json())["__ow_body"] == "plain words"


@BACKEND_NEUTRAL
async def test_the_path_after_the_extension_projects_a_field_of_the_result(
    http: aiohttp.ClientSession, anonymous: aiohttp.ClientSession
) -> None:
    url = await _web_action(
        http, 'def main(args):\n    return {"echo": args, "content": {"z": "Z", "n": 5}}\n')
    async with anonymous.get(url + ".json/echo?q=1") as resp:
        assert resp.status == 200, await resp.text()
        args = await resp.json()
    assert args["__ow_path"] == "/echo" and args["q"] == "1"  # the action sees the path too
    for path in ("content/z", "content/z/", "content/z//"):
        async with anonymous.get(f"{url}.text/{path}") as resp:
            assert resp.status == 200 and await resp.text() == "Z"
    async with anonymous.get(url + ".text/content/n") as resp:
        assert await resp.text() == "5"
    async with anonymous.get(url + ".json/content") as resp:
        assert await resp.json() == {"z": "Z", "n": 5}
    async with anonymous.get(url + ".json/content/z") as resp:  # a string is no JSON answer
        assert resp.status == 400
        assert (await resp.json())["error"] == "Response is not valid 'application/json'."
    for path in ("foobar", "content/z/x"):
        async with anonymous.get(f"{url}.text/{path}") as resp:
            assert resp.status == 404
            assert (await resp.json())["error"] == "Response does not include requested property."


async def test_json_scalar_is_400(
    http: aiohttp.ClientSession, anonymous: aiohttp.ClientSession
) -> None:
    url = await _web_action(http, 'def main(args):\n    return {"body": 5}\n')
    async with anonymous.get(url + ".json") as resp:  # object: fine
        assert resp.status == 200
    async with anonymous.get(url + ".text") as resp:
        assert resp.status == 200 and await resp.text() == "5"
        assert resp.headers["Content-Type"].startswith("text/plain")
    async with anonymous.get(url + ".http") as resp:  # a number is a JSON body
        assert resp.status == 200 and await resp.json() == 5
    url2 = await _web_action(http, 'def main(args):\n    return {"statusCode": "abc"}\n')
    async with anonymous.get(url2 + ".http") as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "Response is not valid 'message/http'."


async def test_html_svg_text_extensions(
    http: aiohttp.ClientSession, anonymous: aiohttp.ClientSession
) -> None:
    code = ('def main(args):\n    return {"html": "<h1>hi</h1>", "svg": "<svg/>",'
            ' "text": "plain"}\n')
    url = await _web_action(http, code)
    for ext, content_type, body in ((".html", "text/html", "<h1>hi</h1>"),
                                    (".svg", "image/svg+xml", "<svg/>"),
                                    (".text", "text/plain", "plain")):
        async with anonymous.get(url + ext) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith(content_type)
            assert await resp.text() == body


async def test_binary_body_round_trip(
    http: aiohttp.ClientSession, anonymous: aiohttp.ClientSession
) -> None:
    # The request body arrives base64 in __ow_body; the answer is base64 decoded.
    code = '''
def main(args):
    return {"headers": {"Content-Type": "image/png"}, "body": args["__ow_body"]}
'''
    url = await _web_action(http, code)
    async with anonymous.post(url + ".http", data=PNG_BYTES,
                              headers={"Content-Type": "image/png"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "image/png"
        assert await resp.read() == PNG_BYTES


async def test_empty_body_is_204_and_bad_base64_binary_is_400(
    http: aiohttp.ClientSession, anonymous: aiohttp.ClientSession
) -> None:
    url = await _web_action(http, 'def main(args):\n    return {}\n')
    async with anonymous.get(url + ".http") as resp:
        assert resp.status == 204
    bad = ('def main(args):\n    return {"headers": {"content-type": "image/png"},'
           ' "body": "not base64!"}\n')
    url2 = await _web_action(http, bad)
    async with anonymous.get(url2 + ".http") as resp:
        assert resp.status == 400


async def test_raw_http_passes_query_and_body_unparsed(
    http: aiohttp.ClientSession, anonymous: aiohttp.ClientSession
) -> None:
    url = await _web_action(http, ECHO, annotations={"raw-http": True})
    async with anonymous.post(url + ".json?a=1&b=2", json={"x": 1}) as resp:
        args = await resp.json()
    assert "a" not in args and "x" not in args
    assert args["__ow_query"] == "a=1&b=2"
    assert base64.b64decode(args["__ow_body"]) == b'{"x": 1}'
    async with anonymous.get(url + ".json") as resp:
        assert (await resp.json())["__ow_body"] == ""


async def test_require_whisk_auth(
    http: aiohttp.ClientSession, anonymous: aiohttp.ClientSession, cluster: Cluster
) -> None:
    secured = await _web_action(http, ECHO, annotations={"require-whisk-auth": True})
    async with anonymous.get(secured + ".json") as resp:
        assert resp.status == 401
    async with anonymous.get(secured + ".json", headers=cluster.auth_header) as resp:
        assert resp.status == 200 and (await resp.json())["__ow_user"] == "guest"
    secret = await _web_action(http, ECHO, annotations={"require-whisk-auth": "s3cret"})
    async with anonymous.get(secret + ".json", headers={"X-Require-Whisk-Auth": "no"}) as resp:
        assert resp.status == 401
    async with anonymous.get(secret + ".json",
                             headers={"X-Require-Whisk-Auth": "s3cret"}) as resp:
        assert resp.status == 200


async def test_options_cors_and_custom_options(
    http: aiohttp.ClientSession, anonymous: aiohttp.ClientSession
) -> None:
    url = await _web_action(http, ECHO)
    async with anonymous.options(url + ".json",
                                 headers={"Access-Control-Request-Headers": "X-Mine"}) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "PATCH" in resp.headers["Access-Control-Allow-Methods"]
        assert resp.headers["Access-Control-Allow-Headers"] == "X-Mine"
        assert "x-openwhisk-activation-id" not in resp.headers
    async with anonymous.get(url + ".json") as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
    custom = await _web_action(
        http, 'def main(args):\n    return {"statusCode": 200, "headers": {"Allow": "GET"}}\n',
        annotations={"web-custom-options": True})
    async with anonymous.options(custom) as resp:
        assert resp.status == 200 and resp.headers["Allow"] == "GET"
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert "x-openwhisk-activation-id" in resp.headers


async def test_errors(http: aiohttp.ClientSession, anonymous: aiohttp.ClientSession) -> None:
    app_error = await _web_action(
        http, 'def main(args):\n    return {"error": {"statusCode": 418, "body": "teapot"}}\n')
    async with anonymous.get(app_error + ".http") as resp:  # the error is rendered
        assert resp.status == 418 and await resp.text() == "teapot"
    crash = await _web_action(http, "def main(args):\n    return {(\n")  # developer error
    async with anonymous.get(crash + ".json") as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "There was an error processing your request."
    name = _name("hidden")
    async with http.put(f"{ACTIONS}/{name}",
                        json={"exec": {"kind": "python:3.11", "code": ECHO}}) as resp:
        assert resp.status == 200
    async with anonymous.get(f"/api/v1/web/guest/default/{name}.json") as resp:
        assert resp.status == 404
    async with anonymous.get("/api/v1/web/guest/default/no-such-action.json") as resp:
        assert resp.status == 404
    url = await _web_action(http, ECHO)
    async with anonymous.get(url + ".json", params={"__ow_method": "x"}) as resp:
        assert resp.status == 400
    async with anonymous.head(url + ".json") as resp:
        assert resp.status == 200


@BACKEND_NEUTRAL
async def test_a_binding_in_the_url_reaches_the_bound_packages_web_action(
    http: aiohttp.ClientSession, anonymous: aiohttp.ClientSession
) -> None:
    package, binding, name = _name("tools"), _name("mine"), _name("hi")
    async with http.put(f"/api/v1/namespaces/_/packages/{package}",
                        json={"parameters": [{"key": "greeting", "value": "Hi"},
                                             {"key": "who", "value": "package"}]}) as resp:
        assert resp.status == 200, await resp.text()
    async with http.put(f"/api/v1/namespaces/_/packages/{binding}", json={
            "binding": {"namespace": "guest", "name": package},
            "parameters": [{"key": "greeting", "value": "Hey"}]}) as resp:
        assert resp.status == 200, await resp.text()
    async with http.put(f"{ACTIONS}/{package}/{name}", json={
            "exec": {"kind": "python:3.11", "code": ECHO},
            "annotations": [{"key": "web-export", "value": True}]}) as resp:
        assert resp.status == 200, await resp.text()
    async with anonymous.get(f"/api/v1/web/guest/{binding}/{name}.json") as resp:
        assert resp.status == 200, await resp.text()
        args = await resp.json()
        activation_id = resp.headers["x-openwhisk-activation-id"]
    assert (args["greeting"], args["who"]) == ("Hey", "package")  # binding over package
    async with anonymous.get(f"/api/v1/web/guest/{package}/{name}.json") as resp:
        assert (await resp.json())["greeting"] == "Hi"
    async with http.get(f"/api/v1/namespaces/_/activations/{activation_id}") as resp:
        record = await resp.json()
    assert {"key": "binding", "value": f"guest/{binding}"} in record["annotations"]
    async with anonymous.get(f"/api/v1/web/guest/{_name('none')}/{name}.json") as resp:
        assert resp.status == 404
