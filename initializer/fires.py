"""The ``ft.fires`` consumer: every message published to ``ft.events``.

Two kinds arrive. The gateway publishes a msgpack ``TriggerFire``. Any other AMQP producer
publishes the payload itself (JSON, msgpack or text) with routing key
``<namespace>.<trigger>``; its message id becomes the trigger activation id when it has
OpenWhisk's format, so a producer that sets one gets idempotent redelivery too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from bus.broker import settle
from bus.codec import CONTENT_TYPE, unpack_obj
from bus.events import TriggerDoc, TriggerFire
from bus.ids import is_activation_id, new_activation_id, now_ms
from bus.store import Store
from initializer.fanout import FireFanout

log = logging.getLogger(__name__)

RETRY_PAUSE_S = 0.5  # before handing a fire back after a broker or Redis failure


class UndecodableFire(ValueError):
    pass


def payload_object(value: Any) -> dict[str, Any]:
    """Actions take an object: anything else is wrapped."""
    return value if isinstance(value, dict) else {"payload": value}


def decode_payload(body: bytes, content_type: str | None) -> Any:
    if not body:
        return {}
    if content_type == CONTENT_TYPE:
        return unpack_obj(body)
    try:
        return json.loads(body)
    except ValueError:
        pass
    try:
        return body.decode()
    except UnicodeDecodeError as exc:
        raise UndecodableFire("body is neither JSON, msgpack nor UTF-8 text") from exc


def trigger_names(routing_key: str) -> Iterator[tuple[str, str]]:
    """(namespace, trigger) readings of a routing key; names may contain dots, so every
    split is a candidate, the shortest namespace first."""
    start = 0
    while (dot := routing_key.find(".", start)) > 0:
        if dot + 1 < len(routing_key):
            yield routing_key[:dot], routing_key[dot + 1:]
        start = dot + 1


class FireConsumer:
    def __init__(self, store: Store, fanout: FireFanout) -> None:
        self.store = store
        self.fanout = fanout

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            fire, trigger = await self._decode(message)
        except Exception as exc:
            log.warning("undecodable fire %s (%s) sent to ft.dead: %s",
                        message.message_id, message.routing_key, exc)
            await settle(message, ack=False, requeue=False)
            return
        if trigger is None:
            log.warning("fire for missing trigger %s sent to ft.dead", message.routing_key)
            await settle(message, ack=False, requeue=False)
            return
        try:
            if await self.store.has_record(fire.activation_id):
                await settle(message)  # fanned out before; the ack was what got lost
                return
            await self.fanout.fire(fire, trigger=trigger)
        except Exception as exc:
            log.warning("fire %s not handed on, returned to the queue: %s",
                        fire.activation_id, exc)
            await asyncio.sleep(RETRY_PAUSE_S)
            await settle(message, ack=False, requeue=True)
            return
        await settle(message)

    async def _decode(
        self, message: AbstractIncomingMessage
    ) -> tuple[TriggerFire, TriggerDoc | None]:
        routing_key = message.routing_key or ""
        value = decode_payload(message.body, message.content_type)
        if (isinstance(value, dict)
                and routing_key == f"{value.get('namespace')}.{value.get('trigger')}"
                and "activation_id" in value and "fired_at" in value):
            fire = TriggerFire.model_validate(value)
            trigger = await self.store.get_entity(
                "triggers", fire.namespace, fire.trigger, TriggerDoc)
            return fire, trigger
        payload = payload_object(value)
        mid = message.message_id or ""
        names = list(trigger_names(routing_key))
        for namespace, name in names:
            trigger = await self.store.get_entity("triggers", namespace, name, TriggerDoc)
            if trigger is not None:
                break
        else:
            namespace, name = names[0] if names else ("", routing_key)
            trigger = None
        fire = TriggerFire(
            activation_id=mid if is_activation_id(mid) else new_activation_id(),
            namespace=namespace, trigger=name, subject=namespace, payload=payload,
            fired_at=now_ms(),
        )
        return fire, trigger
