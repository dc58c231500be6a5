"""``ft admin`` (OpenWhisk's ``wskadmin``): namespaces' keys and throttles, written straight to
the Redis store (``FT_REDIS_URL``), not through the API: the operator needs no key to make the
first one."""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import string
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bus.config import get_settings
from bus.models import NamespaceAuth, NamespaceLimits
from bus.store import Store
from cli.errors import EXIT_OK, CliError

KEY_LENGTH = 64  # OpenWhisk's Secret: exactly 64 characters
_KEY_ALPHABET = string.ascii_letters + string.digits
# OpenWhisk's entity name rule (EntityPath.scala), which namespaces follow too.
_NAMESPACE = re.compile(r"\A([\w]|[\w][\w@ .&-]{0,254}[\w@.&-])\Z")
LIMIT_FIELDS = ("invocationsPerMinute", "concurrentInvocations", "firesPerMinute")

T = TypeVar("T")


def _with_store(work: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        settings = get_settings()
        store = Store.from_url(settings.redis_url, settings.activation_ttl_s)
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


def new_key() -> str:
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(KEY_LENGTH))


def user_create(args: argparse.Namespace) -> int:
    auth = NamespaceAuth(
        uuid=str(uuid.uuid4()), key=new_key(), namespace=_namespace(args.namespace)
    )
    _with_store(lambda store: store.put_auth(auth))
    print(f"{auth.uuid}:{auth.key}")
    return EXIT_OK


def user_list(args: argparse.Namespace) -> int:
    auths = _with_store(lambda store: store.list_auths(_namespace(args.namespace)))
    for auth in auths:
        print(f"{auth.uuid}:{auth.key}")
    return EXIT_OK


def user_delete(args: argparse.Namespace) -> int:
    # Gateways cache a key for a few seconds: it stops working within that.
    deleted = _with_store(lambda store: store.delete_auth(args.uuid))
    if deleted is None:
        raise CliError(f"Subject '{args.uuid}' does not exist.")
    print("Subject deleted")
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
