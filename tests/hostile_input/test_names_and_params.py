"""Hostile names and query parameters against the session cluster's gateway: every rule of
OpenWhisk's entity names, activation ids, list windows and epoch times, flags, and query
strings that are not UTF-8. Each is a 400 with OpenWhisk's exact message (never a 500, never
a Redis error); the valid extremes are accepted."""

from __future__ import annotations

import json

import aiohttp
import pytest
from yarl import URL

from tests.hostile_input.conftest import tally

ILLEGAL = "The name of the entity contains illegal characters."
NS = "/api/v1/namespaces/_"


async def expect(api: aiohttp.ClientSession, category: str, method: str, url: str,
                 status: int, message: str | None = None, **kwargs: object) -> None:
    # encoded=True: the URL goes out byte for byte as written here (percent escapes included).
    async with api.request(method, URL(url, encoded=True), **kwargs) as reply:
        tally(category).add(reply.status)
        body = await reply.read()
        assert reply.status == status, (url, body[:300])
        if message is not None:
            assert json.loads(body)["error"] == message, url


# Each rule of \A([\w]|[\w][\w@ .&-]{0,254}[\w@.&-])\z (ASCII \w), written as a URL segment.
BAD_NAMES = [
    ("-dash-first", ILLEGAL), ("%20space-first", ILLEGAL), ("@at-first", ILLEGAL),
    (".dot-first", ILLEGAL), ("&amp-first", ILLEGAL), ("space-last%20", ILLEGAL),
    ("dollar$inside", ILLEGAL), ("colon:inside", ILLEGAL), ("hash%23inside", ILLEGAL),
    ("slash%2Finside", ILLEGAL), ("plus+inside", ILLEGAL), ("%C3%A9-not-ascii", ILLEGAL),
    ("%FF%FE-not-utf8", ILLEGAL), ("nul%00inside", ILLEGAL), ("tab%09inside", ILLEGAL),
    ("a" * 257, "Name segement longer than allowed: 257 > 256."),
]
GOOD_NAMES = ["a", "_", "9", "a" * 256, "a.b@c&d-e f_g", "ends-with-dash-", "ends.with.dot."]


@pytest.mark.parametrize(("segment", "message"), BAD_NAMES)
async def test_bad_entity_names_are_400_in_every_collection(
    api: aiohttp.ClientSession, segment: str, message: str
) -> None:
    for method, path in (
        ("GET", f"{NS}/actions/{segment}"), ("PUT", f"{NS}/actions/{segment}"),
        ("DELETE", f"{NS}/actions/{segment}"), ("POST", f"{NS}/actions/{segment}"),
        ("GET", f"{NS}/actions/{segment}/x"), ("GET", f"{NS}/actions/pkg/{segment}"),
        ("GET", f"{NS}/actions/{segment}/"), ("PUT", f"{NS}/triggers/{segment}"),
        ("POST", f"{NS}/triggers/{segment}"), ("GET", f"{NS}/rules/{segment}"),
        ("DELETE", f"{NS}/packages/{segment}"),
    ):
        await expect(api, "bad entity names", method, path, 400, message, json={})


@pytest.mark.parametrize("name", GOOD_NAMES)
async def test_names_at_the_edges_of_the_rules_are_accepted(
    api: aiohttp.ClientSession, name: str
) -> None:
    url = f"{NS}/triggers/{name.replace(' ', '%20')}"
    await expect(api, "bad entity names", "PUT", url + "?overwrite=true", 200, json={})
    async with api.get(URL(url, encoded=True)) as reply:
        assert reply.status == 200
        assert (await reply.json())["name"] == name
    await expect(api, "bad entity names", "DELETE", url, 200)


async def test_names_in_bodies_and_reserved_names(api: aiohttp.ClientSession) -> None:
    await expect(api, "bad entity names", "PUT", f"{NS}/packages/default", 400,
                 "Package name 'default' is reserved.", json={})
    await expect(api, "bad entity names", "PUT", f"{NS}/rules/r", 400,
                 "The request content was malformed:\n'trigger' is not a valid fully qualified "
                 "entity name: /_/bad$name", json={"trigger": "/_/bad$name", "action": "a"})
    await expect(api, "bad entity names", "PUT", f"{NS}/packages/b", 400, ILLEGAL,
                 json={"binding": {"namespace": "whisk.system", "name": "u\u00e9"}})
    await expect(api, "bad entity names", "PUT", f"{NS}/triggers/t", 400,
                 "Feed name is not valid",
                 json={"annotations": [{"key": "feed", "value": "/a/b/c/d"}]})


@pytest.mark.parametrize(("activation_id", "message"), [
    ("1", "Activation id length is 1 but must be 32."),
    ("0" * 33, "Activation id length is 33 but must be 32."),
    ("%FF" * 11, "Activation id length is 33 but must be 32."),
    ("g" * 32, "The activation id is not valid."),
    ("A" * 32, "The activation id is not valid."),
    ("0123456789abcdef0123456789abcde%C3%A9", "The activation id is not valid."),
    ("%20" * 32, "The activation id is not valid."),
])
async def test_bad_activation_ids(
    api: aiohttp.ClientSession, activation_id: str, message: str
) -> None:
    for suffix in ("", "/result", "/logs"):
        await expect(api, "bad activation ids", "GET",
                     f"{NS}/activations/{activation_id}{suffix}", 400, message)
    await expect(api, "bad activation ids", "GET", f"{NS}/activations/{'0' * 32}", 404,
                 "The requested resource does not exist.")


def _not_integer(raw: str, collection: str) -> str:
    return f"The value '{raw}' is not an integer for {collection}."


LIST_CASES = [
    ("limit=-1", "The value '-1' is not in the range of 0 to 200 for {c}."),
    ("limit=201", "The value '201' is not in the range of 0 to 200 for {c}."),
    ("limit=2147483647", "The value '2147483647' is not in the range of 0 to 200 for {c}."),
    ("limit=2147483648", "The value '2147483648' is not an integer for {c}."),
    ("limit=" + "9" * 5000, "The value '" + "9" * 5000 + "' is not an integer for {c}."),
    ("limit=abc", "The value 'abc' is not an integer for {c}."),
    ("limit=1.5", "The value '1.5' is not an integer for {c}."),
    ("limit=1e2", "The value '1e2' is not an integer for {c}."),
    ("limit=", "The value '' is not an integer for {c}."),
    ("limit=%201", "The value ' 1' is not an integer for {c}."),
    ("limit=1_0", "The value '1_0' is not an integer for {c}."),
    ("limit=%D9%A3", "The value '\u0663' is not an integer for {c}."),  # Arabic-Indic 3
    ("limit=%FF", "The value '\ufffd' is not an integer for {c}."),
    ("skip=-1", "The value '-1' is not greater than or equal to 0 for {c}."),
    ("skip=-2147483649", "The value '-2147483649' is not an integer for {c}."),
    ("skip=nope", "The value 'nope' is not an integer for {c}."),
    ("count=maybe", "The query parameter 'count' was malformed:\n'maybe' is not a valid "
                    "Boolean value"),
    ("count=%FF", "The query parameter 'count' was malformed:\n'\ufffd' is not a valid "
                  "Boolean value"),
]


@pytest.mark.parametrize("collection", ["actions", "triggers", "rules", "packages",
                                        "activations"])
async def test_list_windows(api: aiohttp.ClientSession, collection: str) -> None:
    for query, message in LIST_CASES:
        await expect(api, "list parameters", "GET", f"{NS}/{collection}?{query}", 400,
                     message.format(c=collection))
    for query in ("limit=0", "limit=200", "limit=%2B5", "skip=2147483647", "skip=0&count=true"):
        await expect(api, "list parameters", "GET", f"{NS}/{collection}?{query}", 200)


async def test_activation_filters(api: aiohttp.ClientSession) -> None:
    epoch = "Parameter is not a valid value for epoch seconds: {}"
    for name in ("since", "upto"):
        for raw, shown in (("abc", "abc"), ("1.5", "1.5"), ("", ""), ("%FF", "\ufffd"),
                           ("9223372036854775808", "9223372036854775808"),
                           ("-9223372036854775809", "-9223372036854775809")):
            await expect(api, "list parameters", "GET", f"{NS}/activations?{name}={raw}",
                         400, epoch.format(shown))
        for raw in ("-5", "0", "9223372036854775807", "-9223372036854775808"):
            await expect(api, "list parameters", "GET", f"{NS}/activations?{name}={raw}", 200)
    await expect(api, "list parameters", "GET", f"{NS}/activations?docs=true&count=true", 400,
                 "The parameter 'docs' is not permitted with 'count'.")
    for bad in ("a/b/c", "bad$name", "%FF", "/lead"):
        shown = bad.replace("%FF", "\ufffd")
        await expect(api, "list parameters", "GET", f"{NS}/activations?name={bad}", 400,
                     f"Parameter may be a 'simple' name or 'package-name/simple' name: {shown}")


async def test_invoke_and_write_flags(api: aiohttp.ClientSession) -> None:
    await expect(api, "query strings", "PUT", f"{NS}/actions/flags", 200,
                 json={"exec": {"kind": "python:3.11", "code": "def main(a):\n    return a"}},
                 params={"overwrite": "true"})
    for raw in ("0", "-1", "60001", "abc", "%FF", "1e3", "9" * 5000):
        await expect(api, "query strings", "POST", f"{NS}/actions/flags?blocking=true"
                     f"&timeout={raw}", 400, "Timeout must be number of milliseconds up to 60000.")
    for flag in ("blocking", "result", "overwrite", "code"):
        method = {"overwrite": "PUT", "code": "GET"}.get(flag, "POST")
        await expect(api, "query strings", method, f"{NS}/actions/flags?{flag}=%FF%FE", 400,
                     f"The query parameter '{flag}' was malformed:\n'\ufffd\ufffd' is not a "
                     "valid Boolean value", json={})
