"""Schemathesis against the session cluster's gateway, driven by the OpenAPI document the
gateway serves: for every operation, valid requests (positive mode) and requests that break
the document (negative mode), as the hostile tenant. No answer may be a 5xx, and every answer
must match the document (status code, content type, body schema).

Reproducible and bounded: Hypothesis runs derandomized (the examples are a function of the
document), without a database, with a fixed number of examples per operation and mode and no
shrinking; the run takes well under two minutes on two cores. Invokes are throttled by the
tenant's own limits (``HOSTILE_LIMITS``) and generated names rarely hit an existing action, so
the run cannot flood the cluster's invokers. Everything it creates or deletes is in the
tenant's namespace (``{ns}`` is fixed to ``_``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from gateway.openapi import API_DOCS_PATH, DASHBOARD_EVENTS, WEB_PATH
from tests.cluster_fixtures import Cluster
from tests.hostile_input.conftest import Tenant, tally

EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    # Negative mode: a request that breaks the document must be refused (a 4xx), not taken.
    schemathesis.checks.negative_data_rejection,
]
# Unknown query parameters are ignored, as OpenWhisk ignores them, and credentials are the
# tenant's (sent with every request): neither is generated, so negative examples only break
# what the document describes.
CONFIG = schemathesis.Config.from_dict(
    {"generation": {"allow-extra-parameters": False, "with-security-parameters": False}})
REQUEST_TIMEOUT_S = 70
INVOKE_PATH = "/api/v1/namespaces/{ns}/actions/{name}"
ECHO = "schemathesis-echo"
WEB_ECHO = "schemathesis-web-echo"
ECHO_CODE = "def main(args):\n    return args\n"  # a blocking invoke waits at most 60 s


async def _served_document(cluster: Cluster) -> dict[str, Any]:
    async with aiohttp.ClientSession(base_url=cluster.api_host) as http, \
            http.get(API_DOCS_PATH) as reply:
        assert reply.status == 200
        document: dict[str, Any] = await reply.json()
        return document


def _fixed_path_parameters(operation: Any, tenant: Tenant) -> dict[str, str]:
    """Generated names rarely exist: invokes and web calls are pointed at real echo actions,
    so generated arguments travel the whole way through the cluster and back."""
    if operation.path == WEB_PATH:  # web actions are addressed by their owner's namespace
        return {"ns": tenant.namespace, "pkg": "default", "tail": f"{WEB_ECHO}.json"}
    if operation.method.upper() == "POST" and operation.path == INVOKE_PATH:
        return {"ns": "_", "name": ECHO}
    return {"ns": "_"} if "{ns}" in operation.path else {}


async def _create_echo_actions(cluster: Cluster, tenant: Tenant) -> None:
    async with aiohttp.ClientSession(base_url=cluster.api_host,
                                     headers=tenant.auth_header) as http:
        for name, annotations in ((ECHO, []), (WEB_ECHO, [{"key": "web-export", "value": True}])):
            body = {"exec": {"kind": "python:3.11", "code": ECHO_CODE}, "annotations": annotations}
            async with http.put(f"/api/v1/namespaces/_/actions/{name}?overwrite=true",
                                json=body) as reply:
                assert reply.status == 200, await reply.text()


def _run_operation(
    operation: Any, mode: GenerationMode, base_url: str, tenant: Tenant,
    session: requests.Session,
) -> list[str]:
    """Run one operation in one mode; the failures found, as text."""
    failures: list[str] = []
    if operation.path == DASHBOARD_EVENTS:
        # A stream that ends only when the client goes: every request would wait out the
        # timeout. Its snapshots are the dashboard route's, which is run like any other.
        return failures
    if mode == GenerationMode.NEGATIVE and operation.path == WEB_PATH:
        # The web route takes any tail (the action decides): nothing in it can be invalid,
        # and Hypothesis would spend most of the run failing to break it.
        return failures
    # Generated activation ids never exist: a generated wait would only be waited out.
    fixed_query = {"query": {"wait": 0}} if "{activation_id}" in operation.path else {}
    strategy = operation.as_strategy(
        generation_mode=mode,
        path_parameters=_fixed_path_parameters(operation, tenant),
        **fixed_query,
    )
    counts = tally(f"schemathesis {mode.value}")

    @given(case=strategy)
    @settings(max_examples=EXAMPLES[mode], derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, session=session, headers=tenant.auth_header,
                             timeout=REQUEST_TIMEOUT_S)
        counts.add(response.status_code)
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
            failures.append(f"{operation.label} [{mode.value}] {case.method} "
                            f"{case.formatted_path} -> {response.status_code}: {exc}")

    try:
        run()
    except Unsatisfiable:
        # Negative mode on an operation without parameters or body: nothing can be broken.
        assert mode == GenerationMode.NEGATIVE, operation.label
    return failures


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    cluster: Cluster, tenant: Tenant
) -> None:
    schema = schemathesis.openapi.from_dict(await _served_document(cluster), config=CONFIG)
    await _create_echo_actions(cluster, tenant)
    started = time.monotonic()
    failures: list[str] = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in EXAMPLES:
                failures += await _in_thread(
                    _run_operation, operation, mode, cluster.api_host, tenant, session)
    elapsed = time.monotonic() - started
    for mode in EXAMPLES:
        print(tally(f"schemathesis {mode.value}").line(f"schemathesis {mode.value}"))
    print(f"schemathesis: {len(list(schema.get_all_operations()))} operations, "
          f"{EXAMPLES} examples each, derandomized, {elapsed:.1f} s")
    assert failures == [], "\n\n".join(failures[:20])
    assert tally(f"schemathesis {GenerationMode.POSITIVE.value}").server_errors == 0


async def _in_thread(function: Any, *args: Any) -> Any:
    """Hypothesis and requests block: run them off the loop the cluster fixtures share."""
    return await asyncio.to_thread(function, *args)

