"""``ft top``: the dashboard's numbers in a terminal, refreshed every few seconds (or printed
once with ``--once``), from the same snapshot the web page follows
(``GET /api/v1/namespaces/_/dashboard``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from cli.context import Context
from cli.errors import EXIT_OK

CLEAR = "\x1b[H\x1b[2J"
LATEST_SHOWN = 10


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def render(snap: dict[str, Any]) -> str:
    series = snap["series"]
    totals = series["totals"]
    who = f"{snap['namespace']} (administrator: all namespaces)" if snap["admin"] \
        else f"namespace {snap['namespace']}"
    at = time.strftime("%H:%M:%S", time.localtime(snap["at"] / 1000))
    lines = [
        f"Funtainer - {who}  {at}",
        f"last 5 min: {totals['activations']} activations, {totals['errors']} errors, "
        f"{totals['cold_starts']} cold starts | last 5 s: "
        f"{series['activations_per_s'][-1]:.1f}/s, p50 {_ms(series['p50_ms'][-1])}, "
        f"p99 {_ms(series['p99_ms'][-1])}",
        "",
        f"{'INVOKER':<20} {'HEALTH':<13} {'BUSY':>5} {'BUFFERED':>9} {'FREE/TOTAL MB':>14}  "
        "CONTAINERS",
    ]
    for invoker in snap["invokers"]:
        containers = ", ".join(f"{state} {n}" for state, n in
                               (invoker.get("containers") or {}).items() if n) or "none"
        memory = (f"{invoker['free_memory']}/{invoker['user_memory']}"
                  if "user_memory" in invoker else "-")
        lines.append(f"{invoker['id']:<20} {invoker['state']:<13} {invoker.get('busy', '-'):>5} "
                     f"{invoker.get('queued', '-'):>9} {memory:>14}  {containers}")
    lines += ["", f"{'STARTED':<9} {'ACTION':<28} {'ACTIVATION':<33} {'STATUS':<22} "
              f"{'DURATION':>9}  START"]
    for activation in snap["latest"][:LATEST_SHOWN]:
        started = time.strftime("%H:%M:%S", time.localtime(activation["start"] / 1000))
        name = (f"{activation['namespace']}/{activation['name']}" if snap["admin"]
                else activation["name"])
        lines.append(f"{started:<9} {name:<28} {activation['activationId']:<33} "
                     f"{activation['status']:<22} {activation['duration']:>6} ms  "
                     f"{'cold' if activation['cold'] else 'warm'}")
    if snap["feeds"]:
        lines += ["", f"{'FEED':<30} {'KIND':<9} {'WAITING':>8} {'DEAD LETTERS':>13}"]
        for feed in snap["feeds"]:
            lines.append(f"{feed['namespace'] + '/' + feed['trigger']:<30} {feed['kind']:<9} "
                         f"{feed.get('waiting', '-')!s:>8} {feed.get('dead_letters', '-')!s:>13}")
    return "\n".join(lines)


def top(args: argparse.Namespace, *, sleep: Callable[[float], None] = time.sleep) -> int:
    context = Context.from_args(args)
    clear = sys.stdout.isatty() and not args.once
    while True:
        snap = context.call("Unable to read the dashboard", "GET",
                            "namespaces/_/dashboard").body
        print((CLEAR if clear else "") + render(snap), flush=True)
        if args.once:
            return EXIT_OK
        sleep(args.interval)


def add_top_command(subparsers: argparse._SubParsersAction, common: list) -> None:
    parser = subparsers.add_parser(
        "top", parents=common, help="the dashboard's numbers in the terminal, live")
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    parser.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                        help="seconds between refreshes (default 2)")
    parser.set_defaults(handler=top)
