"""Hostile bodies against the session cluster's gateway: too large (with and without a
Content-Length), nested too deep, not UTF-8, holding what no encoder takes back (lone
surrogates, NaN, numbers past 64 bits), or not JSON at all. Each is refused with OpenWhisk's
status and exact message; what is accepted at the limit is kept and carried whole (stored and
read back, and sent to the invoker as msgpack and returned by a real action)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.bodies import MAX_JSON_DEPTH
from tests.cluster_fixtures import Cluster
from tests.hostile_input.conftest import Tenant, host_port, raw_request, tally

MB = 1024 * 1024
PAYLOAD_MAX = 1 * MB  # activation.payload.max
ECHO_CODE = "def main(args):\n    return args\n"
TOO_DEEP = ("The request content was malformed:\nJSON input nested too deeply:JSON input was "
            f"nested more deeply than the configured limit of maxNesting = {MAX_JSON_DEPTH}")


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


async def expect_error(reply: aiohttp.ClientResponse, category: str, status: int,
                       message: str) -> None:
    tally(category).add(reply.status)
    body = await reply.read()
    assert reply.status == status, body[:500]
    error = json.loads(body)
    assert error["error"] == message
    assert error["code"] == reply.headers["X-Request-ID"]


@pytest.fixture
async def echo(api: aiohttp.ClientSession) -> AsyncIterator[str]:
    """A real action in the tenant's namespace returning its arguments."""
    name = "hostile-echo"
    async with api.put(f"/api/v1/namespaces/_/actions/{name}?overwrite=true",
                       json={"exec": {"kind": "python:3.11", "code": ECHO_CODE}}) as reply:
        assert reply.status == 200, await reply.text()
    yield name


# -- sizes ------------------------------------------------------------------------------------


async def test_oversized_bodies_with_content_length(api: aiohttp.ClientSession,
                                                    echo: str) -> None:
    body = json.dumps({"x": "a" * PAYLOAD_MAX}).encode()
    for path in (f"/api/v1/namespaces/_/actions/{echo}", "/api/v1/namespaces/_/triggers/t1",
                 "/api/v1/namespaces/whisk.system/actions/alarms/alarm"):
        async with api.post(path, data=body,
                            headers={"Content-Type": "application/json"}) as reply:
            await expect_error(reply, "oversized bodies", 413,
                               f"Request larger than allowed: {len(body)} > {PAYLOAD_MAX} bytes.")


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def test_oversized_chunked_bodies_without_length(api: aiohttp.ClientSession,
                                                       echo: str) -> None:
    body = json.dumps({"x": "a" * (2 * PAYLOAD_MAX)}).encode()
    async with api.post(f"/api/v1/namespaces/_/actions/{echo}", data=_chunks(body),
                        headers={"Content-Type": "application/json"}) as reply:
        assert reply.request_info.headers.get("Transfer-Encoding") == "chunked"
        await expect_error(reply, "oversized bodies", 413,
                           f"Request larger than allowed: {len(body)} > {PAYLOAD_MAX} bytes.")
    # Just under the limit, chunked, is taken whole.
    fits = {"x": "b" * (PAYLOAD_MAX - 100)}
    async with api.post(f"/api/v1/namespaces/_/actions/{echo}?blocking=true&result=true",
                        data=_chunks(json.dumps(fits).encode()),
                        headers={"Content-Type": "application/json"}) as reply:
        assert reply.status == 200, await reply.text()
        assert await reply.json() == fits


async def test_chunked_body_past_the_hard_limit_is_cut_off(cluster: Cluster,
                                                           tenant: Tenant) -> None:
    """A PUT body without a length may grow to the 50 MB hard limit; past it the gateway stops
    counting (it would otherwise read forever) and refuses it."""
    host, port = host_port(cluster.api_host)
    chunk = b"a" * MB
    head = (f"PUT /api/v1/namespaces/_/actions/huge HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: {tenant.auth_header['Authorization']}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n").encode()
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    reply = await raw_request(host, port, head + framed * 51 + b"0\r\n\r\n", timeout=60)
    tally("oversized bodies").add(reply.status)
    assert reply.status == 413
    assert reply.json()["error"] == "Request larger than allowed: more than 52428800 bytes."


# -- nesting ----------------------------------------------------------------------------------


async def test_deep_nesting_is_refused_everywhere(api: aiohttp.ClientSession, echo: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    just_over = json.dumps(nested(MAX_JSON_DEPTH + 1))
    targets = [
        ("PUT", "/api/v1/namespaces/_/actions/deep",
         '{"exec":{"kind":"python:3.11","code":"x"},"parameters":[{"key":"k","value":%s}]}'),
        ("POST", f"/api/v1/namespaces/_/actions/{echo}", "%s"),
        ("POST", f"/api/v1/namespaces/_/actions/{echo}", '{"k":%s}'),
        ("PUT", "/api/v1/namespaces/_/triggers/deep", '{"parameters":[{"key":"k","value":%s}]}'),
        ("POST", "/api/v1/namespaces/_/triggers/deep", '{"k":%s}'),
        ("PUT", "/api/v1/namespaces/_/packages/deep", '{"annotations":[{"key":"k","value":%s}]}'),
        ("PUT", "/api/v1/namespaces/_/rules/deep", '{"trigger":%s}'),
    ]
    for method, path, template in targets:
        for value in (deep, just_over):
            async with api.request(method, path, data=(template % value).encode(),
                                   headers={"Content-Type": "application/json"}) as reply:
                await expect_error(reply, "deep nesting", 400, TOO_DEEP)


async def test_deepest_accepted_value_is_stored_read_back_and_invoked(
    api: aiohttp.ClientSession, echo: str
) -> None:
    # Inside {"parameters": [{"value": ...}]}: the body is nested exactly to the limit.
    deepest = nested(MAX_JSON_DEPTH - 3)
    body = {"exec": {"kind": "python:3.11", "code": ECHO_CODE},
            "parameters": [{"key": "deep", "value": deepest}]}
    async with api.put("/api/v1/namespaces/_/actions/deepest?overwrite=true", json=body) as reply:
        assert reply.status == 200, await reply.text()
        assert (await reply.json())["parameters"][0]["value"] == deepest
    async with api.get("/api/v1/namespaces/_/actions/deepest") as reply:
        assert reply.status == 200
        assert (await reply.json())["parameters"][0]["value"] == deepest
    # Through msgpack to the invoker, JSON to the container and back into a record.
    arguments = {"other": nested(MAX_JSON_DEPTH - 1)}
    async with api.post("/api/v1/namespaces/_/actions/deepest?blocking=true",
                        json=arguments) as reply:
        assert reply.status == 200, await reply.text()
        activation = await reply.json()
    assert activation["response"]["result"] == {**arguments, "deep": deepest}
    async with api.get(f"/api/v1/namespaces/_/activations/{activation['activationId']}") as reply:
        assert reply.status == 200
        assert (await reply.json())["response"]["result"] == {**arguments, "deep": deepest}


# -- encodings and values ---------------------------------------------------------------------


MALFORMED = "The request content was malformed:\n"


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"k": "\xff\xfe"}', "'utf-8' codec can't decode byte 0xff in position 7: "
                           "invalid start byte"),
    (b'{"k": "\xed\xa0\x80"}', "'utf-8' codec can't decode byte 0xed in position 7: "
                               "invalid continuation byte"),
    (b'{"k": "\\ud800"}', "the string escape \\ud800 is an unpaired surrogate, not a Unicode "
                          "character"),
    (b'{"\\udfff": 1}', "the string escape \\udfff is an unpaired surrogate, not a Unicode "
                        "character"),
    (b'{"k": NaN}', "NaN is not a valid JSON value"),
    (b'{"k": -Infinity}', "-Infinity is not a valid JSON value"),
    (b'{"k": 1e999}', "number 1e999 is out of range"),
    (b'{"k": 18446744073709551616}', "number 18446744073709551616 is out of range"),
    (b'{"k": -9223372036854775809}', "number -9223372036854775809 is out of range"),
    (b"null", "Object or array expected"),
    (b'"text"', "Object or array expected"),
    (b"{\"k\": 1", "Expecting ',' delimiter: line 1 column 8 (char 7)"),
])
async def test_bodies_no_encoder_takes_back_are_refused(
    api: aiohttp.ClientSession, echo: str, raw: bytes, message: str
) -> None:
    async with api.post(f"/api/v1/namespaces/_/actions/{echo}", data=raw,
                        headers={"Content-Type": "application/json"}) as reply:
        await expect_error(reply, "invalid utf-8 and values", 400, MALFORMED + message)


async def test_edge_values_within_range_are_carried_whole(
    api: aiohttp.ClientSession, echo: str
) -> None:
    values = {"max": 2**64 - 1, "min": -(2**63), "pair": "\U0001f600", "nul": "a\u0000b",
              "float": 1.7976931348623157e308, "bidi": "\u202e\u0000"}
    raw = json.dumps(values).encode()  # \ud83d\ude00: a surrogate pair is a real character
    async with api.post(f"/api/v1/namespaces/_/actions/{echo}?blocking=true&result=true",
                        data=raw, headers={"Content-Type": "application/json"}) as reply:
        assert reply.status == 200, await reply.text()
        assert await reply.json() == values


async def test_other_charsets_are_decoded_as_declared(api: aiohttp.ClientSession,
                                                      echo: str) -> None:
    values = {"name": "Ünïcödé"}
    async with api.post(f"/api/v1/namespaces/_/actions/{echo}?blocking=true&result=true",
                        data=json.dumps(values, ensure_ascii=False).encode("utf-16"),
                        headers={"Content-Type": "application/json; charset=utf-16"}) as reply:
        assert reply.status == 200, await reply.text()
        assert await reply.json() == values
    async with api.post(f"/api/v1/namespaces/_/actions/{echo}", data=b"{}",
                        headers={"Content-Type": "application/json; charset=klingon"}) as reply:
        await expect_error(reply, "content types", 415,
                           "The request's Content-Type [application/json; charset=klingon] is "
                           "not supported. Expected:\napplication/json")


# -- content types ----------------------------------------------------------------------------


def _unsupported(shown: str) -> str:
    return f"The request's Content-Type [{shown}] is not supported. Expected:\napplication/json"


@pytest.mark.parametrize(("method", "path"), [
    ("PUT", "/api/v1/namespaces/_/actions/typed"),
    ("POST", "/api/v1/namespaces/_/actions/hostile-echo"),
    ("PUT", "/api/v1/namespaces/_/triggers/typed"),
    ("POST", "/api/v1/namespaces/_/triggers/typed"),
    ("PUT", "/api/v1/namespaces/_/rules/typed"),
    ("POST", "/api/v1/namespaces/_/rules/typed"),
    ("PUT", "/api/v1/namespaces/_/packages/typed"),
    ("POST", "/api/v1/namespaces/whisk.system/actions/alarms/alarm"),
])
async def test_non_json_bodies_are_415(
    cluster: Cluster, tenant: Tenant, api: aiohttp.ClientSession, echo: str, method: str,
    path: str,
) -> None:
    for content_type, shown in (("text/plain", "text/plain"),
                                ("application/x-www-form-urlencoded",
                                 "application/x-www-form-urlencoded"),
                                ("Text/Plain; Charset=UTF-8", "text/plain; Charset=UTF-8"),
                                ("application/jsonx", "application/jsonx")):
        async with api.request(method, path, data=b'{"a": 1}',
                               headers={"Content-Type": content_type}) as reply:
            await expect_error(reply, "content types", 415, _unsupported(shown))
    # A body without a Content-Type is application/octet-stream (Pekko's reading).
    host, port = host_port(cluster.api_host)
    auth = tenant.auth_header["Authorization"]
    raw = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
           "Content-Length: 8\r\nConnection: close\r\n\r\n{\"a\": 1}").encode()
    reply = await raw_request(host, port, raw)
    tally("content types").add(reply.status)
    assert reply.status == 415
    assert reply.json()["error"] == _unsupported("application/octet-stream")
