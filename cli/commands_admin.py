"""``ft admin`` (OpenWhisk's ``wskadmin``): namespaces' keys and throttles, written straight to
the Redis store (``FT_REDIS_URL``), not through the API: the operator needs no key to make the
first one.

A secret is printed once, when its key is made (``user create``, ``key add``, ``key rotate``);
Redis holds only its hash, so no command can show it again. Revoking or rotating a key takes
effect on every gateway at once (their caches hear of it through Redis pub/sub)."""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from bus.config import get_settings
from bus.keys import StoredKey
from bus.models import NamespaceLimits
from bus.store import Store
from cli.errors import EXIT_OK, CliError

# OpenWhisk's entity name rule (EntityPath.scala), which namespaces follow too.
_NAMESPACE = re.compile(r"\A([\w]|[\w][\w@ .&-]{0,254}[\w@.&-])\Z")
LIMIT_FIELDS = ("invocationsPerMinute", "concurrentInvocations", "firesPerMinute")

T = TypeVar("T")


def _with_store(work: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        settings = get_settings()
        store = Store.for_settings(settings)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except OSError as err:  # redis' ConnectionError is an OSError too
        raise CliError(f"cannot reach Redis at {get_settings().redis_url}: {err}") from err


def _namespace(text: str) -> str:
    if not _NAMESPACE.match(text):
        raise CliError(f"Invalid namespace '{text}'.")
    return text


def _when(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="seconds")


def _describe(key: StoredKey) -> str:
    """One listed key: its uuid and dates, never its secret (which is not stored anyway)."""
    expires = _when(key.expires) if key.expires is not None else "never"
    return f"{key.uuid}  created {_when(key.created)}  expires {expires}"


def _create_key(namespace: str, *, first: bool) -> str:
    async def work(store: Store) -> str:
        existing = await store.keys.list(namespace)
        if first and existing:
            raise CliError(f"Namespace '{namespace}' already exists; "
                           "add a key with 'ft admin key add'.")
        if not first and not existing:
            raise CliError(f"Namespace '{namespace}' does not exist; "
                           "create it with 'ft admin user create'.")
        _, credential = await store.keys.create(namespace)
        return credential

    return _with_store(work)


def user_create(args: argparse.Namespace) -> int:
    """A new namespace and its first key, printed once."""
    print(_create_key(_namespace(args.namespace), first=True))
    return EXIT_OK


def key_add(args: argparse.Namespace) -> int:
    """Another key for an existing namespace, printed once."""
    print(_create_key(_namespace(args.namespace), first=False))
    return EXIT_OK


def user_list(args: argparse.Namespace) -> int:
    for key in _with_store(lambda store: store.keys.list(_namespace(args.namespace))):
        print(_describe(key))
    return EXIT_OK


def user_delete(args: argparse.Namespace) -> int:
    deleted = _with_store(lambda store: store.keys.revoke(args.uuid))
    if deleted is None:
        raise CliError(f"Subject '{args.uuid}' does not exist.")
    print("Subject deleted")
    return EXIT_OK


def key_rotate(args: argparse.Namespace) -> int:
    """A new key for the namespace of UUID, printed once; UUID stops working now or after
    ``--grace`` seconds."""
    if args.grace < 0:
        raise CliError("--grace must be 0 or more seconds.")
    rotated = _with_store(lambda store: store.keys.rotate(args.uuid, args.grace * 1000))
    if rotated is None:
        raise CliError(f"Subject '{args.uuid}' does not exist.")
    print(rotated[1])
    return EXIT_OK


def _print_limits(limits: NamespaceLimits) -> None:
    own = limits.model_dump(exclude_none=True)
    if not own:
        print("No limits found, default system limits apply")
    for field, value in own.items():
        print(f"{field} = {value}")


def limits_set(args: argparse.Namespace) -> int:
    wanted = NamespaceLimits.model_validate({f: getattr(args, f) for f in LIMIT_FIELDS})
    if not wanted.model_dump(exclude_none=True):
        raise CliError("Give at least one of --" + ", --".join(LIMIT_FIELDS) + ".")
    if any(v < 0 for v in wanted.model_dump(exclude_none=True).values()):
        raise CliError("Limits must be 0 or more.")
    _with_store(lambda store: store.set_limits(_namespace(args.namespace), wanted))
    print("Limits updated")
    return EXIT_OK


def limits_get(args: argparse.Namespace) -> int:
    _print_limits(_with_store(lambda store: store.get_limits(_namespace(args.namespace))))
    return EXIT_OK


def limits_delete(args: argparse.Namespace) -> int:
    _with_store(lambda store: store.clear_limits(_namespace(args.namespace)))
    print("Limits deleted")
    return EXIT_OK
