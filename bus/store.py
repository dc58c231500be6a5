"""The Redis store: auth keys, entities (versioned, with content-addressed code) and
activation records (first write wins, TTL, per-namespace time index).

Keys (all under ``ft:``):
  auth:<uuid>, authns:<ns>       API keys, hashed (bus/keys.py)
  ent:<collection>:<ns>:<name>   entity document (actions, triggers, rules, packages);
                                 every change announced on channel ent:changed
  ents:<collection>:<ns>         zset name -> updated (ms), for newest-first listing
  code:<sha256>                  action code, written once, shared by every version using it
  act:<id>                       ActivationRecord
  acts:<ns> / acts:<ns>:<name>   zset id -> start (ms)
  feed:<ns>/<trigger>            FeedDoc;  feeds: set of feed keys
  lease:<name>                   owner id, with a TTL (one initializer runs a feed)
  tick:<name>:<epoch>            claimed once per alarm tick across initializers
  limits:<ns>                    hash: a namespace's own throttles (NamespaceLimits fields)
  rate:<inv|fire>:<ns>:<minute>  invocations / fires counted in one calendar minute
  inflight:<ns>                  zset activation id -> deadline (ms): accepted, no record yet
  idem:<ns>:<sha256 of key>      the activation id an Idempotency-Key stands for (a day)
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import TypeVar

import redis.asyncio as aioredis
from pydantic import BaseModel

from bus.codec import pack, unpack
from bus.config import Settings
from bus.events import FeedDoc
from bus.ids import now_ms
from bus.keys import KeyStore, StoredKey
from bus.models import ActionDoc, ActivationRecord, NamespaceAuth, NamespaceLimits
from bus.redis_nodes import ReplicaAcks, close_client, redis_client

E = TypeVar("E", bound=BaseModel)

# Every entity write and delete is announced here, as "<collection>:<ns>:<name>", so processes
# that cache entities drop the changed one (pub/sub channels span Redis databases: a listener
# may hear of another database's entities, which costs it one needless re-read).
ENTITY_CHANGED_CHANNEL = "ft:ent:changed"

# One round trip, atomic: the first record for an activation id wins and is indexed once.
# Any record ends its activation's flight, so it leaves the namespace's in-flight set here
# (whoever writes it: invoker, initializer, sequence runner) rather than in each writer.
# Records in one round trip, each stored unless one exists for its id (first write wins), in
# the order given. Per record: KEYS record, namespace index, action index, in-flight set;
# ARGV packed record, start, id. After them ARGV: TTL, then the oldest start the indexes keep
# (each index is trimmed once per call). Reply: 1 per stored record, 0 per existing one.
_WRITE_RECORDS = """
local ttl, oldest = ARGV[#ARGV - 1], ARGV[#ARGV]
local stored, trimmed = {}, {}
for i = 0, #KEYS / 4 - 1 do
  local k, a = 4 * i, 3 * i
  redis.call('ZREM', KEYS[k + 4], ARGV[a + 3])
  if redis.call('SET', KEYS[k + 1], ARGV[a + 1], 'NX', 'EX', ttl) then
    for j = 2, 3 do
      redis.call('ZADD', KEYS[k + j], ARGV[a + 2], ARGV[a + 3])
      if not trimmed[KEYS[k + j]] then
        redis.call('ZREMRANGEBYSCORE', KEYS[k + j], '-inf', oldest)
        trimmed[KEYS[k + j]] = true
      end
    end
    stored[i + 1] = 1
  else
    stored[i + 1] = 0
  end
end
return stored
"""

# A record only through its namespace's index: another namespace's activation id then takes
# the very path a missing one takes (one nil answer), so neither the answer nor its timing
# tells the two apart.
_RECORD_OF = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return redis.call('GET', KEYS[2]) end
return false
"""

# The invoke throttles in one round trip: count this request in its calendar minute, then
# (only if under the rate) drop expired in-flight ids, count the rest and admit this one.
# The namespace's own limits are read here too, so `ft admin limits set` applies at once and
# the gateway needs no second read. Reply: {verdict, count, allowed}, verdict 0 admitted,
# 1 over the rate, 2 over the concurrency.
_THROTTLE_INVOKE = """
local own = redis.call('HMGET', KEYS[1], 'invocationsPerMinute', 'concurrentInvocations')
local per_minute = tonumber(own[1]) or tonumber(ARGV[1])
local concurrent = tonumber(own[2]) or tonumber(ARGV[2])
-- A refusal for concurrency does not count against the minute: a producer that waits for a
-- slot and asks again (a queue feed, a rule) must not use the window up by asking. Refusals
-- for the rate count as upstream (the message's count); the window is already full then.
local function counted()
  local n = redis.call('INCR', KEYS[2])
  if n == 1 then redis.call('EXPIRE', KEYS[2], 120) end
  return n
end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= per_minute then
  return {1, counted(), per_minute}
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[3])
local in_flight = redis.call('ZCARD', KEYS[3])
if in_flight >= concurrent then return {2, in_flight, concurrent} end
local count = counted()
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
-- The set outlives its newest deadline only briefly, so an idle namespace leaves nothing.
local ttl = math.ceil((tonumber(ARGV[4]) - tonumber(ARGV[3])) / 1000) + 60
if redis.call('TTL', KEYS[3]) < ttl then redis.call('EXPIRE', KEYS[3], ttl) end
return {0, count, per_minute}
"""

_THROTTLE_FIRE = """
local per_minute = tonumber(redis.call('HGET', KEYS[1], 'firesPerMinute')) or tonumber(ARGV[1])
local count = redis.call('INCR', KEYS[2])
if count == 1 then redis.call('EXPIRE', KEYS[2], 120) end
if count > per_minute then return {1, count, per_minute} end
return {0, count, per_minute}
"""

# The activation id a caller's idempotency key stands for: this one if the key is new.
_CLAIM_KEY = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return ARGV[1] end
return redis.call('GET', KEYS[1])
"""

# Renew a lease only if we still hold it.
_RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Replace an entity only if the stored one still has the version the caller read, and say
# so on ARGV[5] in the same step: no reader can see the new version before its announcement.
_REPLACE_ENTITY = """
local current = redis.call('GET', KEYS[1])
if (ARGV[1] == '' and current) or (ARGV[1] ~= '' and current ~= ARGV[1]) then
  return 0
end
-- KEYS[3..]: the same name in the namespace's other collections (a name is unique across them)
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return 2 end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""


# A name is unique across these in a namespace, as OpenWhisk's document ids are.
ENTITY_COLLECTIONS = ("actions", "triggers", "rules", "packages")


class NameTaken(Exception):
    """Another collection of the namespace holds the name (OpenWhisk's 409 "Resource by this
    name exists but is not in this collection.")."""


class Store:
    def __init__(
        self, client: aioredis.Redis, record_ttl_s: int = 7 * 24 * 3600,
        replica_acks: ReplicaAcks | None = None,
    ) -> None:
        self.redis = client
        self.record_ttl_s = record_ttl_s
        self.replica_acks = replica_acks or ReplicaAcks(0, 0)
        self.keys = KeyStore(client)
        self._write_records = client.register_script(_WRITE_RECORDS)
        self._record_of = client.register_script(_RECORD_OF)
        self._replace_entity = client.register_script(_REPLACE_ENTITY)
        self._renew_lease = client.register_script(_RENEW_LEASE)
        self._release_lease = client.register_script(_RELEASE_LEASE)
        self._throttle_invoke = client.register_script(_THROTTLE_INVOKE)
        self._throttle_fire = client.register_script(_THROTTLE_FIRE)
        self._claim_key = client.register_script(_CLAIM_KEY)
        # Told of this process's own entity writes as they succeed, before the caller is.
        self._entity_watchers: list[Callable[[str], None]] = []

    @classmethod
    def from_url(
        cls, url: str, record_ttl_s: int = 7 * 24 * 3600, replica_acks: ReplicaAcks | None = None,
    ) -> Store:
        return cls(redis_client(url), record_ttl_s, replica_acks)

    @classmethod
    def for_settings(cls, settings: Settings) -> Store:
        return cls.from_url(settings.redis_url, settings.activation_ttl_s, ReplicaAcks(
            settings.redis_replicas_to_ack, settings.redis_replica_wait_ms))

    async def close(self) -> None:
        await close_client(self.redis)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    # -- auth (bus/keys.py; these are the calls most code needs) -------------------------------

    async def put_auth(self, auth: NamespaceAuth) -> StoredKey:
        """Register an issued ``uuid:key`` (stored hashed)."""
        return await self.keys.put(auth.namespace, auth.uuid, auth.key)

    async def get_auth(self, uuid: str) -> StoredKey | None:
        return await self.keys.get(uuid)

    async def authenticate(self, uuid: str, key: str) -> str | None:
        """The namespace ``uuid:key`` belongs to, or None."""
        stored = await self.keys.authenticate(uuid, key)
        return None if stored is None else stored.namespace

    # -- namespace limits and throttles ------------------------------------------------------

    async def get_limits(self, ns: str) -> NamespaceLimits:
        raw = await self.redis.hgetall(f"ft:limits:{ns}")
        return NamespaceLimits.model_validate({k.decode(): int(v) for k, v in raw.items()})

    async def set_limits(self, ns: str, limits: NamespaceLimits) -> NamespaceLimits:
        """Set the given fields (None ones keep their current value); the merged limits."""
        fields = limits.model_dump(exclude_none=True)
        if fields:
            await self.redis.hset(f"ft:limits:{ns}", mapping=fields)
        return await self.get_limits(ns)

    async def clear_limits(self, ns: str) -> None:
        await self.redis.delete(f"ft:limits:{ns}")

    async def throttle_invoke(
        self, ns: str, activation_id: str, *, now: int, deadline: int, per_minute: int,
        concurrent: int,
    ) -> tuple[int, int, int]:
        """Count one invocation and admit ``activation_id`` in flight until its record is
        written or ``deadline`` (ms) passes. ``(verdict, count, allowed)``: verdict 0 admitted,
        1 over the minute's rate, 2 too many in flight. The defaults apply unless the namespace
        has its own limits."""
        verdict, count, allowed = await self._throttle_invoke(
            keys=[f"ft:limits:{ns}", f"ft:rate:inv:{ns}:{now // 60_000}", f"ft:inflight:{ns}"],
            args=[per_minute, concurrent, now, deadline, activation_id],
        )
        return int(verdict), int(count), int(allowed)

    async def throttle_fire(self, ns: str, *, now: int, per_minute: int) -> tuple[int, int, int]:
        """Count one trigger fire in its calendar minute: ``(verdict, count, allowed)``."""
        verdict, count, allowed = await self._throttle_fire(
            keys=[f"ft:limits:{ns}", f"ft:rate:fire:{ns}:{now // 60_000}"], args=[per_minute],
        )
        return int(verdict), int(count), int(allowed)

    async def release_in_flight(self, ns: str, activation_id: str) -> None:
        """For an admitted activation that was never published."""
        await self.redis.zrem(f"ft:inflight:{ns}", activation_id)

    async def claim_idempotency_key(
        self, ns: str, key: str, activation_id: str, ttl_s: int = 24 * 3600
    ) -> str:
        """The activation id ``key`` stands for in ``ns``: ``activation_id`` if the key is
        new, else the id of the earlier request that used it."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        owner = await self._claim_key(keys=[f"ft:idem:{ns}:{digest}"],
                                      args=[activation_id, ttl_s])
        return owner.decode() if isinstance(owner, bytes) else str(owner)

    async def in_flight(self, ns: str) -> int:
        return int(await self.redis.zcount(f"ft:inflight:{ns}", now_ms(), "+inf"))

    # -- code --------------------------------------------------------------------------------

    async def put_code(self, code: str) -> str:
        data = code.encode()
        # sha256 releases the GIL: hashing tens of MB in a thread keeps the loop serving.
        if len(data) > 1024 * 1024:
            digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        else:
            digest = hashlib.sha256(data).hexdigest()
        await self.redis.set(f"ft:code:{digest}", data, nx=True)
        return digest

    async def get_code(self, digest: str) -> str | None:
        raw = await self.redis.get(f"ft:code:{digest}")
        return None if raw is None else raw.decode()

    # -- entities ----------------------------------------------------------------------------

    def watch_entities(self, changed: Callable[[str], None]) -> None:
        """Call ``changed("<collection>:<ns>:<name>")`` after each entity this store writes
        or deletes (others' writes come over ``ENTITY_CHANGED_CHANNEL``)."""
        self._entity_watchers.append(changed)

    def unwatch_entities(self, changed: Callable[[str], None]) -> None:
        self._entity_watchers.remove(changed)

    def _entity_changed(self, entity: str) -> None:
        for changed in self._entity_watchers:
            changed(entity)

    async def get_entity(self, collection: str, ns: str, name: str, model: type[E]) -> E | None:
        raw = await self.redis.get(f"ft:ent:{collection}:{ns}:{name}")
        return None if raw is None else unpack(raw, model)

    async def put_entity(
        self, collection: str, ns: str, name: str, doc: BaseModel, updated: int,
        replaces: BaseModel | None,
    ) -> bool:
        """Create (``replaces=None``) or replace the exact document read earlier.

        False means a concurrent writer got there first (409 for the API); ``NameTaken``
        that another collection of the namespace holds the name."""
        expected = pack(replaces) if replaces is not None else b""
        entity = f"{collection}:{ns}:{name}"
        done = await self._replace_entity(
            keys=[f"ft:ent:{entity}", f"ft:ents:{collection}:{ns}",
                  *self._elsewhere(collection, ns, name)],
            args=[expected, pack(doc), updated, name, ENTITY_CHANGED_CHANNEL, entity],
        )
        if done == 2:
            raise NameTaken(f"{ns}/{name} is not in {collection}")
        if done:
            self._entity_changed(entity)
        return bool(done)

    async def entity_elsewhere(self, collection: str, ns: str, name: str) -> bool:
        """Whether another collection of the namespace holds ``name``."""
        return bool(await self.redis.exists(*self._elsewhere(collection, ns, name)))

    @staticmethod
    def _elsewhere(collection: str, ns: str, name: str) -> list[str]:
        return [f"ft:ent:{other}:{ns}:{name}" for other in ENTITY_COLLECTIONS
                if other != collection]

    async def delete_entity(self, collection: str, ns: str, name: str, model: type[E]) -> E | None:
        entity = f"{collection}:{ns}:{name}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.getdel(f"ft:ent:{entity}")
            pipe.zrem(f"ft:ents:{collection}:{ns}", name)
            pipe.publish(ENTITY_CHANGED_CHANNEL, entity)
            raw, _, _ = await pipe.execute()
        if raw is None:
            return None
        self._entity_changed(entity)
        return unpack(raw, model)

    async def list_entities(
        self, collection: str, ns: str, model: type[E], skip: int = 0, limit: int = 30
    ) -> list[E]:
        names = await self.redis.zrevrange(f"ft:ents:{collection}:{ns}", skip, skip + limit - 1)
        if not names:
            return []
        raws = await self.redis.mget([f"ft:ent:{collection}:{ns}:{n.decode()}" for n in names])
        return [unpack(raw, model) for raw in raws if raw is not None]

    async def count_entities(self, collection: str, ns: str) -> int:
        return int(await self.redis.zcard(f"ft:ents:{collection}:{ns}"))

    # Actions are the entity every process reads; name the calls.
    async def get_action(self, ns: str, name: str) -> ActionDoc | None:
        return await self.get_entity("actions", ns, name, ActionDoc)

    # -- activation records ------------------------------------------------------------------

    async def write_record(self, record: ActivationRecord) -> bool:
        """Store a record unless one exists for this id. True if this one was stored."""
        [stored] = await self.write_records([record])
        return stored

    async def write_records(self, records: list[ActivationRecord]) -> list[bool]:
        """``write_record`` for several records in one round trip (an invoker's turn)."""
        keys: list[str] = []
        args: list[bytes | str | int] = []
        for record in records:
            ns, rid = record.namespace, record.activationId
            keys += [f"ft:act:{rid}", f"ft:acts:{ns}", f"ft:acts:{ns}:{record.name}",
                     f"ft:inflight:{ns}"]
            args += [pack(record), record.start, rid]
        args += [self.record_ttl_s, now_ms() - self.record_ttl_s * 1000]
        if not self.replica_acks.should_wait():
            stored = await self._write_records(keys=keys, args=args)
            return [bool(s) for s in stored]
        # The same round trip carries the WAIT: the records (and any write before them on
        # this connection) are on the replicas, or the timeout passed, when it answers.
        acks = self.replica_acks
        async with self.redis.pipeline(transaction=False) as pipe:
            await self._write_records(keys=keys, args=args, client=pipe)
            pipe.wait(acks.wanted, acks.timeout_ms)
            stored, replicas = await pipe.execute()
        acks.acked(int(replicas))
        return [bool(s) for s in stored]

    async def get_record(self, activation_id: str) -> ActivationRecord | None:
        raw = await self.redis.get(f"ft:act:{activation_id}")
        return None if raw is None else unpack(raw, ActivationRecord)

    async def get_record_of(self, ns: str, activation_id: str) -> ActivationRecord | None:
        """The record of ``activation_id`` if namespace ``ns`` owns it (else None, as fast)."""
        raw = await self._record_of(
            keys=[f"ft:acts:{ns}", f"ft:act:{activation_id}"], args=[activation_id])
        return None if raw is None else unpack(raw, ActivationRecord)

    async def has_record(self, activation_id: str) -> bool:
        return bool(await self.redis.exists(f"ft:act:{activation_id}"))

    def _record_index(self, ns: str, name: str | None) -> str:
        return f"ft:acts:{ns}:{name}" if name else f"ft:acts:{ns}"

    async def list_records(
        self, ns: str, *, name: str | None = None, skip: int = 0, limit: int = 30,
        since: int | None = None, upto: int | None = None,
    ) -> list[ActivationRecord]:
        ids = await self.redis.zrevrangebyscore(
            self._record_index(ns, name),
            upto if upto is not None else "+inf",
            since if since is not None else "-inf",
            start=skip, num=limit,
        )
        if not ids:
            return []
        raws = await self.redis.mget([f"ft:act:{i.decode()}" for i in ids])
        return [unpack(raw, ActivationRecord) for raw in raws if raw is not None]

    async def count_records(
        self, ns: str, *, name: str | None = None, since: int | None = None,
        upto: int | None = None,
    ) -> int:
        return int(await self.redis.zcount(
            self._record_index(ns, name),
            since if since is not None else "-inf",
            upto if upto is not None else "+inf",
        ))

    async def count_records_of(self, ns: str, names: list[str], since: int) -> int:
        """Records of the actions ``names`` since ``since``, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zcount(self._record_index(ns, name), since, "+inf")
            return sum(int(count) for count in await pipe.execute())

    # -- feeds -------------------------------------------------------------------------------

    async def put_feed(self, feed: FeedDoc) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(f"ft:feed:{feed.key}", pack(feed))
            pipe.sadd("ft:feeds", feed.key)
            await pipe.execute()

    async def get_feed(self, key: str) -> FeedDoc | None:
        raw = await self.redis.get(f"ft:feed:{key}")
        return None if raw is None else unpack(raw, FeedDoc)

    async def delete_feed(self, key: str) -> FeedDoc | None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.getdel(f"ft:feed:{key}")
            pipe.srem("ft:feeds", key)
            raw, _ = await pipe.execute()
        return None if raw is None else unpack(raw, FeedDoc)

    async def feed_keys(self) -> list[str]:
        return sorted(k.decode() for k in await self.redis.smembers("ft:feeds"))

    # -- coordination between initializers ---------------------------------------------------

    async def acquire_lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        """Take ``name`` for ``ttl_ms`` unless someone else holds it (or renew our own)."""
        if await self.redis.set(f"ft:lease:{name}", owner, nx=True, px=ttl_ms):
            return True
        return bool(await self._renew_lease(keys=[f"ft:lease:{name}"], args=[owner, ttl_ms]))

    async def release_lease(self, name: str, owner: str) -> None:
        await self._release_lease(keys=[f"ft:lease:{name}"], args=[owner])

    async def claim_tick(self, name: str, tick: int, ttl_s: int = 3600) -> bool:
        """True for exactly one caller per (name, tick): an alarm fires once per tick."""
        return bool(await self.redis.set(f"ft:tick:{name}:{tick}", b"1", nx=True, ex=ttl_s))
