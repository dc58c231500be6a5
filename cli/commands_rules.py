"""``ft rule create|update|enable|disable|status|get|delete|list`` with wsk's requests and
output."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from cli.commands_triggers import list_namespace
from cli.context import Context
from cli.errors import EXIT_OK, CliError
from cli.output import format_rule_list, print_got, sort_by_name
from funtainer import ApiError
from funtainer.names import QualifiedName

# Fields `ft rule get NAME FIELD` accepts (wsk checks against its Rule struct).
RULE_FIELDS = (
    "namespace", "name", "version", "status", "trigger", "action", "publish", "annotations",
    "updated",
)


def rules_path(name: QualifiedName) -> str:
    return f"namespaces/{name.namespace_path}/rules/{name.entity_path}"


def _reference(context: Context, text: str) -> str:
    """A trigger or action as the rule body names it: fully qualified, like wsk sends it."""
    name = context.name(text)
    return f"/{name.namespace}/{name.entity}"


def _put_rule(args: argparse.Namespace, update: bool) -> int:
    context = Context.from_args(args)
    name = context.name(args.name)
    body = {
        "name": name.name,
        "trigger": _reference(context, args.trigger),
        "action": _reference(context, args.action),
    }
    verb = "update" if update else "create"
    context.call(
        f"Unable to {verb} rule '{name.entity}'", "PUT", rules_path(name),
        query={"overwrite": update}, body=body,
    )
    print(f"ok: {verb}d rule {name.entity}")
    return EXIT_OK


def rule_create(args: argparse.Namespace) -> int:
    return _put_rule(args, update=False)


def rule_update(args: argparse.Namespace) -> int:
    return _put_rule(args, update=True)


def _set_state(context: Context, name: QualifiedName, status: str, verb: str) -> None:
    context.call(
        f"Unable to {verb} rule '{name.entity}'", "POST", rules_path(name),
        body={"status": status},
    )


def rule_enable(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    name = context.name(args.name)
    _set_state(context, name, "active", "enable")
    print(f"ok: enabled rule {name.entity}")
    return EXIT_OK


def rule_disable(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    name = context.name(args.name)
    _set_state(context, name, "inactive", "disable")
    print(f"ok: disabled rule {name.entity}")
    return EXIT_OK


def rule_status(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    name = context.name(args.name)
    rule = context.call(
        f"Unable to get status of rule '{name.entity}'", "GET", rules_path(name)
    ).body
    print(f"ok: rule {name.entity} is {rule.get('status', '')}")
    return EXIT_OK


def rule_get(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    name = context.name(args.name)
    if args.field and args.field not in RULE_FIELDS:
        raise CliError(f"Invalid field filter '{args.field}'.")
    rule = context.call(f"Unable to get rule '{name.entity}'", "GET", rules_path(name)).body
    print_got("rule", name.entity, rule, args.field)
    return EXIT_OK


def rule_delete(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    name = context.name(args.name)
    if args.disable:
        _set_state(context, name, "inactive", "disable")
    context.call(f"Unable to delete rule '{name.entity}'", "DELETE", rules_path(name))
    print(f"ok: deleted rule {name.entity}")
    return EXIT_OK


def with_status(context: Context, namespace: str, rule: dict[str, Any]) -> dict[str, Any]:
    """List items have no status (it lives in the trigger): get each rule, as wsk does."""
    path = f"namespaces/{quote(namespace, safe='')}/rules/{quote(str(rule.get('name')), safe='')}"
    try:
        got = context.client.request("GET", path).body
    except ApiError:
        return rule  # deleted meanwhile: listed without a status
    return {**rule, "status": got.get("status", "")} if isinstance(got, dict) else rule


def rule_list(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    namespace = list_namespace(context, args.namespace)
    shown = "default" if namespace == "_" else namespace
    rules = context.call(
        f"Unable to obtain the list of rules for namespace '{shown}'",
        "GET", f"namespaces/{quote(namespace, safe='')}/rules",
        query={"limit": args.limit, "skip": args.skip},
    ).body or []
    rules = [with_status(context, namespace, rule) for rule in rules]
    print(format_rule_list(sort_by_name(rules) if args.name_sort else rules))
    return EXIT_OK
