"""``ft activation list|get|result|logs`` with wsk's flags, ``--last`` and output."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any
from urllib.parse import quote

from cli.context import Context
from cli.errors import EXIT_OK, CliError
from cli.output import format_activation_table, format_logs, print_got, print_json

# Fields `ft activation get ID FIELD` accepts (wsk checks against its Activation struct).
ACTIVATION_FIELDS = (
    "namespace",
    "name",
    "version",
    "subject",
    "activationId",
    "cause",
    "start",
    "end",
    "duration",
    "statusCode",
    "response",
    "logs",
    "annotations",
    "publish",
)


def _activations_path(context: Context, suffix: str = "") -> str:
    return f"namespaces/{quote(context.config.namespace, safe='')}/activations{suffix}"


def _activation_path(context: Context, activation_id: str, leaf: str = "") -> str:
    return _activations_path(context, f"/{quote(activation_id, safe='')}{leaf}")


def latest_activation_id(context: Context, failure: str) -> str:
    """wsk's ``--last``: list one activation (the list is newest first) and take its id."""
    listed = context.call(
        failure, "GET", _activations_path(context), query={"limit": 1, "skip": 0}
    ).body
    if not listed:
        raise CliError(f"{failure}: Activation list does not contain any activations.")
    return str(listed[0]["activationId"])


def _resolve_id(context: Context, args: argparse.Namespace, failure: str) -> str:
    if args.last:
        return latest_activation_id(context, failure)
    if not args.activation_id:
        raise CliError("Invalid argument(s). An activation ID is required.")
    return str(args.activation_id)


def activation_list(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    query: dict[str, Any] = {"limit": args.limit, "skip": args.skip}
    if args.name:
        query["name"] = context.name(args.name).entity
    if args.since:
        query["since"] = args.since
    if args.upto:
        query["upto"] = args.upto
    if args.full:
        query["docs"] = True
    namespace = context.config.namespace
    activations = (
        context.call(
            "Unable to obtain the list of activations for namespace "
            f"'{'default' if namespace == '_' else namespace}'",
            "GET",
            _activations_path(context),
            query=query,
        ).body
        or []
    )
    if args.full:
        print("activations")
        for activation in activations:
            print_json(activation)
    else:
        print(format_activation_table(activations))
    return EXIT_OK


def activation_get(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    field = args.field
    if args.last and args.activation_id and not field:
        # `get --last FIELD`: the only positional is the field (wsk shifts it the same way).
        field, args.activation_id = args.activation_id, None
    if field and field not in ACTIVATION_FIELDS:
        raise CliError(f"Invalid field filter '{field}'.")
    activation_id = _resolve_id(context, args, "Unable to get activation")
    activation = context.call(
        f"Unable to get activation '{activation_id}'",
        "GET",
        _activation_path(context, activation_id),
    ).body
    if args.summary:
        print(format_activation_summary(activation))
        print_json((activation.get("response") or {}).get("result"))
    elif args.logs:
        if activation.get("logs"):
            print(format_logs(activation["logs"], strip=True))
    else:
        print_got("activation", activation_id, activation, field)
    return EXIT_OK


def format_activation_summary(activation: dict[str, Any]) -> str:
    status = (activation.get("response") or {}).get("status", "")
    ended = datetime.fromtimestamp(int(activation.get("end") or 0) / 1000).astimezone()
    return (
        f"activation result for '/{activation.get('namespace', '')}/{activation.get('name', '')}' "
        f"({status} at {ended:%Y-%m-%d %H:%M:%S %z %Z})"
    )


def activation_result(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    activation_id = _resolve_id(context, args, "Unable to get result for activation")
    answer = context.call(
        f"Unable to get result for activation '{activation_id}'",
        "GET",
        _activation_path(context, activation_id, "/result"),
    ).body
    print_json(answer.get("result") if isinstance(answer, dict) else answer)
    return EXIT_OK


def activation_logs(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    activation_id = _resolve_id(context, args, "Unable to get logs for activation")
    answer = context.call(
        f"Unable to get logs for activation '{activation_id}'",
        "GET",
        _activation_path(context, activation_id, "/logs"),
    ).body
    lines = answer.get("logs") if isinstance(answer, dict) else None
    if lines:
        print(format_logs(lines, strip=args.strip))
    return EXIT_OK
