"""API keys (OpenWhisk's ``uuid:key``), stored hashed in Redis.

Keys:
  ft:auth:<uuid>         StoredKey (a legacy plaintext NamespaceAuth is upgraded when read)
  ft:authns:<namespace>  set of the uuids of the namespace's own keys (not minted ones)
  ft:auth:revoked        pub/sub channel: a uuid whose key was revoked or got an expiry, so
                         every gateway drops it from its cache at once

The uuid names a key (like an access key id): a namespace may hold several, each with its own
uuid. Only a salted HMAC-SHA256 digest of the secret is stored. A slow password hash (bcrypt,
scrypt, argon2) defends low-entropy secrets against offline guessing; these secrets are 64
random characters (~380 bits), which no guessing reaches, so a slow hash would only turn every
uncached authentication (and every failed one) into ~50 ms of CPU an attacker can spend for us.
The per-key random salt keeps equal secrets (the well-known guest key in two deployments) from
having equal digests and rules out precomputed tables.

Minted keys are activation-scoped: the invoker registers one for an action that asks for
``__OW_API_KEY`` just before running it, with a TTL a little past the action's time limits,
and revokes it when the run ends. No long-lived key ever enters a container or the bus.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import uuid as uuidlib
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel

from bus.codec import pack, unpack_obj
from bus.ids import now_ms
from bus.models import NamespaceAuth

KEY_LENGTH = 64  # OpenWhisk's Secret: exactly 64 characters
_KEY_ALPHABET = string.ascii_letters + string.digits
SALT_BYTES = 16
REVOKED_CHANNEL = "ft:auth:revoked"
# Verifying an unknown uuid still hashes once, so a miss costs what a wrong key costs and the
# answer's timing does not tell which uuids exist.
_DECOY_SALT = secrets.token_bytes(SALT_BYTES)


def new_secret() -> str:
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(KEY_LENGTH))


def digest_of(salt: bytes, secret: str) -> str:
    return hmac.new(salt, secret.encode(), hashlib.sha256).hexdigest()


class StoredKey(BaseModel):
    """What Redis holds for one key: never the secret itself."""

    uuid: str
    namespace: str
    salt: str  # hex
    digest: str  # hex HMAC-SHA256(salt, secret)
    created: int  # epoch ms
    expires: int | None = None  # epoch ms; None: until revoked
    activation: str | None = None  # set on a minted key: the activation it was made for

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(digest_of(bytes.fromhex(self.salt), secret), self.digest)

    def expired(self, now: int) -> bool:
        return self.expires is not None and self.expires <= now


def _stored(namespace: str, uuid: str, secret: str, *, expires: int | None = None,
            activation: str | None = None) -> StoredKey:
    salt = secrets.token_bytes(SALT_BYTES)
    return StoredKey(uuid=uuid, namespace=namespace, salt=salt.hex(),
                     digest=digest_of(salt, secret), created=now_ms(), expires=expires,
                     activation=activation)


class KeyStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    @staticmethod
    def _key(uuid: str) -> str:
        return f"ft:auth:{uuid}"

    @staticmethod
    def _index(namespace: str) -> str:
        return f"ft:authns:{namespace}"

    async def _decode(self, raw: bytes) -> StoredKey:
        fields: dict[str, Any] = unpack_obj(raw)
        if "digest" in fields:
            return StoredKey.model_validate(fields)
        # Written before keys were hashed: hash it now, so the plaintext leaves Redis.
        legacy = NamespaceAuth.model_validate(fields)
        stored = _stored(legacy.namespace, legacy.uuid, legacy.key)
        await self._write(stored)
        return stored

    async def _write(self, stored: StoredKey) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            if stored.expires is None:
                pipe.set(self._key(stored.uuid), pack(stored))
            else:
                pipe.set(self._key(stored.uuid), pack(stored), pxat=stored.expires)
            if stored.activation is None:
                pipe.sadd(self._index(stored.namespace), stored.uuid)
            await pipe.execute()

    async def get(self, uuid: str) -> StoredKey | None:
        raw = await self.redis.get(self._key(uuid))
        if raw is None:
            return None
        stored = await self._decode(raw)
        return None if stored.expired(now_ms()) else stored

    async def put(self, namespace: str, uuid: str, secret: str,
                  *, expires: int | None = None) -> StoredKey:
        """Register ``uuid:secret`` for ``namespace`` (replacing any key under ``uuid``)."""
        previous = await self.get(uuid)
        stored = _stored(namespace, uuid, secret, expires=expires)
        await self._write(stored)
        if previous is not None:
            if previous.namespace != namespace:
                await self.redis.srem(self._index(previous.namespace), uuid)
            await self._announce(uuid)  # the old secret must stop working everywhere
        return stored

    async def create(self, namespace: str) -> tuple[StoredKey, str]:
        """A new key for ``namespace``: the stored form and ``uuid:secret``, which is shown
        once and never again."""
        uuid, secret = str(uuidlib.uuid4()), new_secret()
        return await self.put(namespace, uuid, secret), f"{uuid}:{secret}"

    async def authenticate(self, uuid: str, secret: str) -> StoredKey | None:
        stored = await self.get(uuid)
        if stored is None:
            digest_of(_DECOY_SALT, secret)
            return None
        return stored if stored.matches(secret) else None

    async def list(self, namespace: str) -> list[StoredKey]:
        """The namespace's own keys, oldest first. Expired ones are dropped from the index."""
        uuids = sorted(u.decode() for u in await self.redis.smembers(self._index(namespace)))
        if not uuids:
            return []
        raws = await self.redis.mget([self._key(u) for u in uuids])
        found: list[StoredKey] = []
        now = now_ms()
        for uuid, raw in zip(uuids, raws, strict=True):
            stored = None if raw is None else await self._decode(raw)
            if stored is None or stored.expired(now) or stored.namespace != namespace:
                await self.redis.srem(self._index(namespace), uuid)
            else:
                found.append(stored)
        return sorted(found, key=lambda k: (k.created, k.uuid))

    async def revoke(self, uuid: str) -> StoredKey | None:
        """Delete the key now; None if there was none."""
        raw = await self.redis.getdel(self._key(uuid))
        if raw is None:
            return None
        fields: dict[str, Any] = unpack_obj(raw)
        await self.redis.srem(self._index(str(fields.get("namespace", ""))), uuid)
        await self._announce(uuid)
        if "digest" in fields:
            return StoredKey.model_validate(fields)
        legacy = NamespaceAuth.model_validate(fields)  # never re-written: it is gone
        return _stored(legacy.namespace, legacy.uuid, legacy.key)

    async def expire(self, uuid: str, at: int) -> StoredKey | None:
        """Let the key work until ``at`` (epoch ms), then never again."""
        stored = await self.get(uuid)
        if stored is None:
            return None
        if stored.expires is not None and stored.expires <= at:
            return stored  # already ends sooner: a grace period never extends a key
        stored = stored.model_copy(update={"expires": at})
        await self._write(stored)
        await self._announce(uuid)
        return stored

    async def rotate(self, uuid: str, grace_ms: int = 0) -> tuple[StoredKey, str] | None:
        """A new key for the namespace of ``uuid``; the old one is revoked now, or expires
        after ``grace_ms`` so clients can switch over. None if ``uuid`` has no key."""
        old = await self.get(uuid)
        if old is None:
            return None
        created = await self.create(old.namespace)
        if grace_ms > 0:
            await self.expire(uuid, now_ms() + grace_ms)
        else:
            await self.revoke(uuid)
        return created

    async def mint(self, namespace: str, activation_id: str, ttl_ms: int) -> tuple[str, str]:
        """An activation-scoped key: ``(uuid, "uuid:secret")``, valid for ``ttl_ms`` unless
        revoked sooner. Not listed among the namespace's keys."""
        uuid, secret = str(uuidlib.uuid4()), new_secret()
        stored = _stored(namespace, uuid, secret, expires=now_ms() + ttl_ms,
                         activation=activation_id)
        await self._write(stored)
        return uuid, f"{uuid}:{secret}"

    async def upgrade_legacy(self) -> int:
        """Hash every key an earlier version stored in clear (and index it under its
        namespace); how many there were. A SCAN, run once when a gateway starts."""
        upgraded = 0
        async for name in self.redis.scan_iter(match="ft:auth:*", count=500):
            raw = await self.redis.get(name)
            if raw is not None and "digest" not in unpack_obj(raw):
                await self._decode(raw)
                upgraded += 1
        return upgraded

    async def _announce(self, uuid: str) -> None:
        await self.redis.publish(REVOKED_CHANNEL, uuid)
