"""The ``ft trigger`` and ``ft rule`` command trees, with wsk's flags."""

from __future__ import annotations

import argparse

from cli import commands_rules as rules
from cli import commands_triggers as triggers
from cli.parser_parts import add_annotation_flags, add_list_flags, add_param_flags, group

_PAIR = ("KEY", "VALUE")


def _add_feed_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--feed", metavar="ACTION",
        help="trigger feed ACTION, e.g. /whisk.system/alarms/alarm",
    )
    parser.add_argument(
        "-F", "--feed-param", nargs=2, action="append", metavar=_PAIR,
        help="parameter for the feed action only (not with -p)",
    )
    parser.add_argument(
        "-T", "--trigger-param", nargs=2, action="append", metavar=_PAIR,
        help="parameter for the trigger only (not with -p)",
    )


def _add_namespace_list(commands: argparse._SubParsersAction, common: list, noun: str) -> None:
    handler = triggers.trigger_list if noun == "triggers" else rules.rule_list
    listing = commands.add_parser("list", parents=common, help=f"list all {noun}")
    listing.add_argument("namespace", metavar="NAMESPACE", nargs="?")
    add_list_flags(listing, noun)
    listing.add_argument("-n", "--name-sort", action="store_true", help="sort results by name")
    listing.set_defaults(handler=handler)


def add_trigger_commands(subparsers: argparse._SubParsersAction, common: list) -> None:
    _, commands = group(subparsers, "trigger", "work with triggers")

    for verb, handler, help_text in (
        ("create", triggers.trigger_create, "create new trigger"),
        ("update", triggers.trigger_update,
         "update an existing trigger, or create a trigger if it does not exist"),
    ):
        parser = commands.add_parser(verb, parents=common, help=help_text, description=help_text)
        parser.add_argument("name", metavar="TRIGGER_NAME")
        add_param_flags(parser)
        add_annotation_flags(parser)
        # wsk has --feed on create only; on update it may create the trigger, so both take it.
        _add_feed_flags(parser)
        parser.set_defaults(handler=handler)

    fire = commands.add_parser("fire", parents=common, help="fire trigger event")
    fire.add_argument("name", metavar="TRIGGER_NAME")
    fire.add_argument("payload", metavar="PAYLOAD", nargs="?", help="a JSON object to send")
    add_param_flags(fire)
    fire.set_defaults(handler=triggers.trigger_fire)

    get = commands.add_parser("get", parents=common, help="get trigger")
    get.add_argument("name", metavar="TRIGGER_NAME")
    get.add_argument(
        "field", metavar="FIELD_FILTER", nargs="?",
        help=f"show one field: {', '.join(triggers.TRIGGER_FIELDS)}",
    )
    get.add_argument("-s", "--summary", action="store_true", help="summarize trigger details")
    get.set_defaults(handler=triggers.trigger_get)

    delete = commands.add_parser("delete", parents=common, help="delete trigger")
    delete.add_argument("name", metavar="TRIGGER_NAME")
    delete.set_defaults(handler=triggers.trigger_delete)

    _add_namespace_list(commands, common, "triggers")


def add_rule_commands(subparsers: argparse._SubParsersAction, common: list) -> None:
    _, commands = group(subparsers, "rule", "work with rules")

    for verb, handler, help_text in (
        ("create", rules.rule_create, "create new rule"),
        ("update", rules.rule_update,
         "update an existing rule, or create a rule if it does not exist"),
    ):
        parser = commands.add_parser(verb, parents=common, help=help_text, description=help_text)
        parser.add_argument("name", metavar="RULE_NAME")
        parser.add_argument("trigger", metavar="TRIGGER_NAME")
        parser.add_argument("action", metavar="ACTION_NAME")
        parser.set_defaults(handler=handler)

    for verb, handler, help_text in (
        ("enable", rules.rule_enable, "enable rule"),
        ("disable", rules.rule_disable, "disable rule"),
        ("status", rules.rule_status, "get rule status"),
    ):
        parser = commands.add_parser(verb, parents=common, help=help_text, description=help_text)
        parser.add_argument("name", metavar="RULE_NAME")
        parser.set_defaults(handler=handler)

    get = commands.add_parser("get", parents=common, help="get rule")
    get.add_argument("name", metavar="RULE_NAME")
    get.add_argument(
        "field", metavar="FIELD_FILTER", nargs="?",
        help=f"show one field: {', '.join(rules.RULE_FIELDS)}",
    )
    get.set_defaults(handler=rules.rule_get)

    delete = commands.add_parser("delete", parents=common, help="delete rule")
    delete.add_argument("name", metavar="RULE_NAME")
    delete.add_argument(
        "--disable", action="store_true", help="automatically disable rule before deleting it"
    )
    delete.set_defaults(handler=rules.rule_delete)

    _add_namespace_list(commands, common, "rules")
