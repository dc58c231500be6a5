"""Alarm and interval feeds: every initializer looks at every alarm once a second, and for
each tick that came due the one that claims it (``store.claim_tick``) fires the trigger.

Claims make a tick fire once however many initializers run; any one of them alive keeps the
schedule. A claimed tick keeps one trigger activation id through its retries, so a retried
fire re-publishes the same rule activations.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from bus.broker import spawn
from bus.cron import CronError
from bus.events import FEEDS_EXCHANGE, FeedChanged, FeedDoc, RuleDoc, TriggerDoc, TriggerFire
from bus.ids import new_activation_id, now_ms
from bus.store import Store
from initializer.fanout import FireFanout, TriggerNotFound
from initializer.schedule import due_ticks

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0
TRIGGERS, RULES = "triggers", "rules"
FIRE_ATTEMPTS = 5  # a claimed tick is ours alone: try hard before giving it up

class AlarmScheduler:
    """Fires every alarm feed's due ticks; a fired ``once`` alarm removes what its
    ``deleteAfterFire`` asks (its trigger's rules, and with ``true`` the trigger and feed)."""

    def __init__(
        self, feeds: Callable[[], Iterable[FeedDoc]], *, store: Store, fanout: FireFanout
    ) -> None:
        self.feeds = feeds
        self.store = store
        self.fanout = fanout
        self._task: asyncio.Task[None] | None = None
        self._fires: set[asyncio.Task[None]] = set()
        self._bad_cron: set[str] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._fires:
            await asyncio.wait(list(self._fires), timeout=5)

    async def _run(self) -> None:
        checked = now_ms()
        while True:
            # Just after each second boundary: ticks on whole seconds fire promptly.
            await asyncio.sleep(CHECK_EVERY_S - (now_ms() % 1000) / 1000 + 0.01)
            now = now_ms()
            for doc in list(self.feeds()):
                try:
                    ticks = due_ticks(doc, checked, now)
                except CronError as exc:
                    if doc.key not in self._bad_cron:
                        log.warning("alarm %s has a bad schedule %r: %s", doc.key, doc.cron, exc)
                        self._bad_cron.add(doc.key)
                    continue
                for tick in ticks:
                    spawn(self._claim_and_fire(doc, tick), self._fires)
            checked = now

    async def _claim_and_fire(self, doc: FeedDoc, tick_ms: int) -> None:
        try:
            if not await self.store.claim_tick(f"alarm:{doc.key}", tick_ms):
                return
        except Exception as exc:
            log.warning("alarm %s tick %d not claimed: %s", doc.key, tick_ms, exc)
            return
        fire = TriggerFire(
            activation_id=new_activation_id(), namespace=doc.namespace,
            trigger=doc.trigger, subject=doc.namespace, payload=dict(doc.trigger_payload),
            fired_at=tick_ms,
        )
        delay = 0.2
        for attempt in range(1, FIRE_ATTEMPTS + 1):
            try:
                await self.fanout.fire(fire)
                if doc.kind == "once" and doc.delete_after_fire != "false":
                    await self._delete_after_fire(doc)
                return
            except TriggerNotFound:
                log.warning("alarm %s: its trigger does not exist", doc.key)
                return
            except Exception as exc:
                log.warning("alarm %s tick %d, attempt %d failed: %s", doc.key, tick_ms,
                            attempt, exc)
                await asyncio.sleep(delay)
                delay *= 2

    async def _delete_after_fire(self, doc: FeedDoc) -> None:
        trigger = await self.store.get_entity(TRIGGERS, doc.namespace, doc.trigger, TriggerDoc)
        for key in (trigger.rules if trigger and trigger.rules else {}):
            rule_ns, _, rule = key.partition("/")
            await self.store.delete_entity(RULES, rule_ns, rule, RuleDoc)
        if doc.delete_after_fire == "rules":
            if trigger is not None and trigger.rules:
                emptied = trigger.model_copy(update={"rules": {}, "updated": now_ms()})
                await self.store.put_entity(TRIGGERS, doc.namespace, doc.trigger, emptied,
                                            emptied.updated, replaces=trigger)
            return
        await self.store.delete_entity(TRIGGERS, doc.namespace, doc.trigger, TriggerDoc)
        if await self.store.delete_feed(doc.key) is not None:
            await self.fanout.broker.publish(
                FeedChanged(key=doc.key, deleted=True), routing_key="",
                exchange=FEEDS_EXCHANGE, mandatory=False)
        log.info("once alarm %s fired; deleted its trigger and rules", doc.key)
