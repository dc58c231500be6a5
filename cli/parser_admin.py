"""argparse for ``ft admin`` (wskadmin's ``user`` and ``limits``, and ``key``), ``ft namespace`` and
``ft activation poll``."""

from __future__ import annotations

import argparse

from cli import commands_admin as admin
from cli import commands_namespaces as namespaces
from cli import commands_poll as poll
from cli.parser_parts import group


def add_admin_commands(subparsers: argparse._SubParsersAction) -> None:
    # No connection flags: admin talks to Redis (FT_REDIS_URL), not to the API.
    _, admin_commands = group(subparsers, "admin", "administer namespaces, keys and limits")
    _, users = group(admin_commands, "user", "create, list and delete namespace keys")
    create = users.add_parser(
        "create", help="create NAMESPACE and its first key (uuid:key, shown only now)")
    create.add_argument("namespace", metavar="NAMESPACE")
    create.set_defaults(handler=admin.user_create)
    listing = users.add_parser("list", help="list the keys of NAMESPACE (never their secrets)")
    listing.add_argument("namespace", metavar="NAMESPACE")
    listing.set_defaults(handler=admin.user_list)
    delete = users.add_parser("delete", help="revoke the key of subject UUID")
    delete.add_argument("uuid", metavar="UUID")
    delete.set_defaults(handler=admin.user_delete)
    _add_key_commands(admin_commands)

    _, limits = group(admin_commands, "limits", "set, get and delete a namespace's throttles")
    set_ = limits.add_parser("set", help="set NAMESPACE's own throttles")
    set_.add_argument("namespace", metavar="NAMESPACE")
    for field in admin.LIMIT_FIELDS:
        set_.add_argument(f"--{field}", dest=field, type=int, metavar="N")
    set_.set_defaults(handler=admin.limits_set)
    for verb, handler, help_text in (
        ("get", admin.limits_get, "show NAMESPACE's own throttles"),
        ("delete", admin.limits_delete, "drop NAMESPACE's own throttles (defaults apply)"),
    ):
        parser = limits.add_parser(verb, help=help_text)
        parser.add_argument("namespace", metavar="NAMESPACE")
        parser.set_defaults(handler=handler)


def _add_key_commands(admin_commands: argparse._SubParsersAction) -> None:
    _, keys = group(admin_commands, "key", "add, rotate, revoke and list a namespace's keys")
    add = keys.add_parser("add", help="another key for NAMESPACE (uuid:key, shown only now)")
    add.add_argument("namespace", metavar="NAMESPACE")
    add.set_defaults(handler=admin.key_add)
    rotate = keys.add_parser(
        "rotate", help="replace the key UUID with a new one (shown only now)")
    rotate.add_argument("uuid", metavar="UUID")
    rotate.add_argument("--grace", type=int, default=0, metavar="SECONDS",
                        help="keep the old key working this long (default: revoke it now)")
    rotate.set_defaults(handler=admin.key_rotate)
    revoke = keys.add_parser("revoke", help="revoke the key UUID now")
    revoke.add_argument("uuid", metavar="UUID")
    revoke.set_defaults(handler=admin.user_delete)
    listing = keys.add_parser("list", help="list the keys of NAMESPACE (never their secrets)")
    listing.add_argument("namespace", metavar="NAMESPACE")
    listing.set_defaults(handler=admin.user_list)


def add_namespace_commands(subparsers: argparse._SubParsersAction, common: list) -> None:
    _, commands = group(subparsers, "namespace", "work with namespaces")
    listing = commands.add_parser("list", parents=common, help="list available namespaces")
    listing.set_defaults(handler=namespaces.namespace_list)
    get = commands.add_parser(
        "get", parents=common, help="get triggers, actions, packages and rules in a namespace"
    )
    get.add_argument("namespace", metavar="NAMESPACE", nargs="?")
    get.add_argument("-n", "--name-sort", action="store_true", help="sort results by name")
    get.set_defaults(handler=namespaces.namespace_get)


def add_poll_command(commands: argparse._SubParsersAction, common: list) -> None:
    parser = commands.add_parser(
        "poll", parents=common, help="poll continuously for log messages from currently "
        "running actions",
    )
    parser.add_argument("name", metavar="NAMESPACE|ACTION_NAME", nargs="?")
    parser.add_argument("-e", "--exit", type=int, default=0, metavar="SECONDS",
                        help="stop polling after SECONDS seconds")
    for unit in ("seconds", "minutes", "hours", "days"):
        parser.add_argument(f"--since-{unit}", type=int, default=0, metavar=unit.upper(),
                            help=f"start polling for activations {unit.upper()} {unit} ago")
    parser.set_defaults(handler=poll.activation_poll)
