"""``ft activation poll [NAMESPACE|ACTION]``: wsk's loop that prints every new activation and
its logs until interrupted (or for ``--exit`` seconds)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from cli.context import Context
from cli.errors import EXIT_OK
from cli.output import format_logs

POLL_INTERVAL_S = 2.0  # wsk's pause between two list requests


def since_seconds(args: argparse.Namespace) -> float:
    return (
        (args.since_seconds or 0) + 60 * (args.since_minutes or 0)
        + 3600 * (args.since_hours or 0) + 86_400 * (args.since_days or 0)
    )


def _target(context: Context, given: str | None) -> tuple[str, str | None]:
    """``(namespace, action filter)``: ``/ns`` polls that namespace, anything else is an
    action of the configured one."""
    if given and given.startswith("/") and given.count("/") == 1:
        return given.strip("/"), None
    if not given:
        return context.config.namespace, None
    return context.config.namespace, context.name(given).entity


def activation_poll(
    args: argparse.Namespace, *, clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    context = Context.from_args(args)
    namespace, action = _target(context, args.name)
    started = clock()
    # Without --since-*, only what starts from now on (wsk: "since" = now).
    since = int((started - since_seconds(args)) * 1000)
    path = f"namespaces/{quote(namespace, safe='')}/activations"
    print("Enter Ctrl-c to exit.")
    while True:
        query: dict[str, Any] = {"since": since, "docs": True, "limit": 0, "skip": 0}
        if action:
            query["name"] = action
        listed = context.call("Unable to poll activations", "GET", path, query=query).body or []
        # Newest first from the server; shown oldest first. The next request starts after the
        # newest start seen, so nothing is shown twice.
        for activation in reversed(listed):
            activation_id = str(activation.get("activationId"))
            print(f"\nActivation: '{activation.get('name', '')}' ({activation_id})")
            lines = activation.get("logs") or []
            if lines:
                print(format_logs(lines, strip=False))
            since = max(since, int(activation.get("start") or 0) + 1)
        if args.exit and clock() - started >= args.exit:
            return EXIT_OK
        sleep(POLL_INTERVAL_S)
