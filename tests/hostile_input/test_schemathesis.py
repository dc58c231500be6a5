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

from gateway.openapi import API_DOCS_PATH, WEB_PATH
from tests.cluster_fixtures import Cluster
from tests.hostile_input.conftest import Tenant, tally

EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 8}
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]
REQUEST_TIMEOUT_S = 70  # a blocking invoke waits at most 60 s


async def _served_document(cluster: Cluster) -> dict[str, Any]:
    async with aiohttp.ClientSession(base_url=cluster.api_host) as http, \
            http.get(API_DOCS_PATH) as reply:
        assert reply.status == 200
        document: dict[str, Any] = await reply.json()
        return document


def _fixed_path_parameters(path: str, tenant: Tenant) -> dict[str, str]:
    if path == WEB_PATH:  # web actions are addressed by their owner's namespace
        return {"ns": tenant.namespace, "pkg": "default"}
    return {"ns": "_"} if "{ns}" in path else {}


def _run_operation(
    operation: Any, mode: GenerationMode, base_url: str, tenant: Tenant,
    session: requests.Session,
) -> list[str]:
    """Run one operation in one mode; the failures found, as text."""
    failures: list[str] = []
    strategy = operation.as_strategy(
        generation_mode=mode,
        path_parameters=_fixed_path_parameters(operation.path, tenant),
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
        except AssertionError as exc:
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
    schema = schemathesis.openapi.from_dict(await _served_document(cluster))
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

