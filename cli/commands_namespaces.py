"""``ft namespace list|get`` (wsk's ``namespace`` commands): the caller's namespaces, and
everything one namespace holds."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from cli.commands_packages import format_package_list
from cli.commands_rules import with_status
from cli.commands_triggers import list_namespace
from cli.context import Context
from cli.errors import EXIT_OK
from cli.output import (
    format_action_list,
    format_rule_list,
    format_trigger_list,
    sort_actions_by_name,
    sort_by_name,
)

# wsk asks for the server's maximum page of each collection (limit=0 means 200).
_ALL = {"limit": 0, "skip": 0}


def namespace_list(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    names = context.call("Unable to obtain the list of available namespaces", "GET",
                         "namespaces").body or []
    print("\n".join(["namespaces", *(str(n) for n in names)]))
    return EXIT_OK


def _collection(context: Context, namespace: str, collection: str) -> list[dict[str, Any]]:
    shown = "default" if namespace == "_" else namespace
    return context.call(
        f"Unable to obtain the list of entities for namespace '{shown}'", "GET",
        f"namespaces/{quote(namespace, safe='')}/{collection}", query=_ALL,
    ).body or []


def namespace_get(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    namespace = list_namespace(context, args.namespace)
    packages = _collection(context, namespace, "packages")
    actions = _collection(context, namespace, "actions")
    triggers = _collection(context, namespace, "triggers")
    rules = [with_status(context, namespace, r) for r in _collection(context, namespace, "rules")]
    if args.name_sort:
        packages, actions = sort_by_name(packages), sort_actions_by_name(actions)
        triggers, rules = sort_by_name(triggers), sort_by_name(rules)
    shown = "default" if namespace == "_" else namespace
    print(f"Entities in namespace: {shown}")
    print(format_package_list(packages))
    print(format_action_list(actions))
    print(format_trigger_list(triggers))
    print(format_rule_list(rules))
    return EXIT_OK
