"""The system catalog every OpenWhisk deployment has: the public package ``/whisk.system/utils``
with ``echo`` and ``sort`` (as in apache/openwhisk-catalog), installed at gateway start-up.

Idempotent and safe with several gateways starting at once: each entity is only created when
absent (the store's create is compare-and-set), never overwritten, so an operator's changes
stay."""

from __future__ import annotations

import logging

from bus.ids import now_ms
from bus.models import ActionExec, NamespaceAuth, PackageDoc
from bus.store import Store
from gateway.action_docs import ActionPut, created_doc, is_binary_code

log = logging.getLogger(__name__)

SYSTEM_NAMESPACE = "whisk.system"
# OpenWhisk's well-known development key for whisk.system (ansible/files/auth.whisk.system).
SYSTEM_UUID = "789c46b1-71f6-4ed5-8c54-816aa4f8c502"
SYSTEM_KEY = "abczO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"
UTILS = "utils"
CATALOG_KIND = "nodejs:18"

ECHO_CODE = "function main(params) {\n  return params || {};\n}\n"
SORT_CODE = """\
/**
 * Sort an array of lines.
 * @param lines an array of strings
 * @return {lines: the lines sorted, length: how many}
 */
function main(params) {
  const lines = Array.isArray(params.lines) ? params.lines.slice() : [];
  lines.sort();
  return { lines: lines, length: lines.length };
}
"""
CATALOG_ACTIONS = {"echo": ECHO_CODE, "sort": SORT_CODE}


async def _ensure_system_key(store: Store) -> None:
    if await store.get_auth(SYSTEM_UUID) is None:
        await store.put_auth(
            NamespaceAuth(uuid=SYSTEM_UUID, key=SYSTEM_KEY, namespace=SYSTEM_NAMESPACE)
        )


async def install_catalog(store: Store) -> None:
    await _ensure_system_key(store)
    updated = now_ms()
    package = PackageDoc(namespace=SYSTEM_NAMESPACE, name=UTILS, publish=True, updated=updated)
    if await store.get_entity("packages", SYSTEM_NAMESPACE, UTILS, PackageDoc) is None:
        await store.put_entity("packages", SYSTEM_NAMESPACE, UTILS, package, updated, None)
    for name, code in CATALOG_ACTIONS.items():
        if await store.get_action(package.path, name) is not None:
            continue
        digest = await store.put_code(code)
        action_exec = ActionExec(
            kind=CATALOG_KIND, code_digest=digest, code_size=len(code.encode()),
            binary=is_binary_code(code),
        )
        doc = created_doc(package.path, name, ActionPut(), action_exec, updated)
        await store.put_entity("actions", package.path, name, doc, updated, None)
    log.info("system catalog /%s/%s installed", SYSTEM_NAMESPACE, UTILS)
