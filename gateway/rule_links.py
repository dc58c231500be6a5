"""Rule links inside trigger documents, changed with compare-and-set.

Rules, trigger updates and status changes all rewrite the same trigger document; each change
re-reads the trigger and retries when another writer got there first, so no link is lost."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from bus.events import EntityRef, RuleLink, TriggerDoc
from bus.ids import now_ms
from bus.store import Store
from gateway.errors import CONFLICT, ApiError
from gateway.trigger_docs import TRIGGERS

_ATTEMPTS = 8

# Returns the rule links the trigger should have, or None to leave the trigger as it is.
LinkChange = Callable[[dict[str, RuleLink] | None], dict[str, RuleLink] | None]


async def get_trigger(store: Store, ref: EntityRef) -> TriggerDoc | None:
    return await store.get_entity(TRIGGERS, ref.path, ref.name, TriggerDoc)


async def change_links(store: Store, ref: EntityRef, change: LinkChange) -> TriggerDoc | None:
    """Apply ``change`` to the trigger's links; the trigger as stored afterwards, or None if
    there is no such trigger."""
    for attempt in range(_ATTEMPTS):
        if attempt:
            # Writers that collided spread out instead of colliding again in lock step.
            await asyncio.sleep(random.uniform(0, 0.002 * attempt))
        current = await get_trigger(store, ref)
        if current is None:
            return None
        links = change(dict(current.rules) if current.rules is not None else None)
        if links is None:
            return current
        updated = now_ms()
        new = current.model_copy(update={"rules": links, "updated": updated})
        if await store.put_entity(TRIGGERS, ref.path, ref.name, new, updated, replaces=current):
            return new
    raise ApiError(409, CONFLICT)


async def link_rule(
    store: Store, trigger: EntityRef, key: str, link: RuleLink
) -> TriggerDoc | None:
    def add(links: dict[str, RuleLink] | None) -> dict[str, RuleLink] | None:
        links = links or {}
        if links.get(key) == link:
            return None
        links[key] = link
        return links

    return await change_links(store, trigger, add)


async def unlink_rule(store: Store, trigger: EntityRef, key: str) -> TriggerDoc | None:
    def remove(links: dict[str, RuleLink] | None) -> dict[str, RuleLink] | None:
        if links is None or key not in links:
            return None
        # Once a rule was linked the trigger keeps showing ``rules``, empty or not.
        del links[key]
        return links

    return await change_links(store, trigger, remove)
