"""The ``ft.destinations`` consumer: deliver an invocation record to an action or a queue.

``/ns/action`` becomes an activation of that action with the record as its parameters (no
async policy: a destination's own failure does not chain into more destinations);
``queue:<name>`` becomes a persistent JSON message on that queue (declared durable if it does
not exist). The delivery's id is derived from the record, so a redelivered message invokes
the destination under the same activation id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import aiormq
from aio_pika.abc import AbstractIncomingMessage

from bus.broker import ACTIVATIONS, Broker, settle
from bus.codec import unpack
from bus.events import Destination
from bus.ids import new_transaction_id
from bus.queues import ensure_queue
from bus.requests import ParametersNotAllowed, build_payload, build_request
from bus.store import Store

log = logging.getLogger(__name__)

QUEUE_PREFIX = "queue:"
RETRY_PAUSE_S = 0.5
_DELIVERY_IDS = uuid.UUID("b8a0f3d2-6c1e-4e5a-9f77-2d4c6e8a1b35")


class Undeliverable(ValueError):
    """The destination cannot ever take this record: dead-letter it."""


def delivery_id(dest: Destination) -> str:
    record = dest.record
    return uuid.uuid5(_DELIVERY_IDS,
                      f"{record.activation_id}/{record.condition}/{dest.target}").hex


def parse_action_target(target: str) -> tuple[str, str]:
    """``/ns/name`` -> (ns, name). Package paths (``/ns/pkg/name``) keep ``pkg/name``."""
    parts = target.strip("/").split("/", 1)
    if not target.startswith("/") or len(parts) != 2 or not all(parts):
        raise Undeliverable(f"not a destination: {target!r}")
    return parts[0], parts[1]


class DestinationConsumer:
    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker
        self._declared: set[str] = set()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            dest = unpack(message.body, Destination)
        except Exception:
            log.exception("undecodable destination %s sent to ft.dead", message.message_id)
            await settle(message, ack=False, requeue=False)
            return
        try:
            if dest.target.startswith(QUEUE_PREFIX):
                await self._to_queue(dest, dest.target[len(QUEUE_PREFIX):])
            else:
                await self._to_action(dest)
        except Undeliverable as exc:
            log.warning("destination %s for %s sent to ft.dead: %s", dest.target,
                        dest.record.activation_id, exc)
            await settle(message, ack=False, requeue=False)
            return
        except Exception as exc:
            log.warning("destination %s not delivered yet: %s", dest.target, exc)
            await asyncio.sleep(RETRY_PAUSE_S)
            await settle(message, ack=False, requeue=True)
            return
        await settle(message)

    async def _to_action(self, dest: Destination) -> None:
        namespace, name = parse_action_target(dest.target)
        doc = await self.store.get_action(namespace, name)
        if doc is None:
            raise Undeliverable(f"action {dest.target} does not exist")
        try:
            payload = build_payload(doc, dest.record.model_dump(mode="json"))
        except ParametersNotAllowed as exc:
            raise Undeliverable(f"{dest.target} does not accept the record's fields") from exc
        aid = delivery_id(dest)
        request = build_request(
            doc, payload, namespace=dest.namespace, activation_id=aid,
            transaction_id=new_transaction_id(), cause=dest.record.activation_id,
        )
        await self.broker.publish(request, routing_key=ACTIVATIONS, message_id=aid)

    async def _to_queue(self, dest: Destination, queue: str) -> None:
        if not queue:
            raise Undeliverable("no queue name")
        body = json.dumps(dest.record.model_dump(mode="json"), separators=(",", ":"))
        try:
            if queue not in self._declared:
                await ensure_queue(self.broker.connection, queue)
                self._declared.add(queue)
            await self.broker.publish_bytes(
                body.encode(), routing_key=queue, content_type="application/json",
                message_id=delivery_id(dest))
        except aiormq.exceptions.ChannelAccessRefused as exc:
            raise Undeliverable(f"queue {queue!r} may not be used: {exc}") from exc
        except Exception:
            self._declared.discard(queue)  # deleted meanwhile? declare it again next time
            raise
