"""The CLI's HTTP client: ``funtainer.Client``, plus wsk's ``--verbose`` trace of each request
and answer."""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx

from funtainer import Client
from funtainer.config import ClientConfig

VERBOSE_BODY_LIMIT = 1000  # wsk truncates traced bodies at this many characters


def cli_client(config: ClientConfig, *, insecure: bool, verbose: bool) -> Client:
    hooks = {"request": [_trace_request], "response": [_trace_response]} if verbose else None
    return Client(config.apihost, config.auth, namespace=config.namespace, insecure=insecure,
                  event_hooks=hooks)


def _print(*lines: Any) -> None:
    for line in lines:
        print(line, file=sys.stdout)


def _trace_request(request: httpx.Request) -> None:
    shown = {key.decode(): value.decode() for key, value in request.headers.raw}
    if "Authorization" in shown:
        shown["Authorization"] = "Basic ***"  # never echo the key into terminals or CI logs
    _print("REQUEST:", f"[{request.method}]\t{request.url}", "Req Headers",
           json.dumps(shown, indent=4))
    if request.content:
        _print("Req Body", _truncate(request.content.decode(errors="replace")))


def _trace_response(response: httpx.Response) -> None:
    raw = response.read()
    _print(f"RESPONSE:Got response with code {response.status_code}", "Resp Headers",
           json.dumps(dict(response.headers), indent=4),
           f"Response body size is {len(raw)} bytes", "Response body received:",
           _truncate(raw.decode(errors="replace")))


def _truncate(text: str) -> str:
    return text if len(text) <= VERBOSE_BODY_LIMIT else text[:VERBOSE_BODY_LIMIT] + "..."


