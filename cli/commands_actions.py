"""``ft action create|update|get|delete|list|invoke`` with wsk's flags, requests and output."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO
from urllib.parse import quote

from cli.context import Context
from cli.errors import EXIT_API, EXIT_NOT_FINISHED, EXIT_OK, CliError
from cli.output import (
    annotation,
    format_action_list,
    format_summary,
    print_got,
    print_json,
    sort_actions_by_name,
)
from cli.params import (
    as_key_value_list,
    build_docker_exec,
    build_exec,
    collect_values,
    web_annotations,
    web_secure_annotation,
)
from funtainer import ApiError
from funtainer.names import QualifiedName, parse_qualified_name
from funtainer.plans import Answer

# Fields `ft action get NAME FIELD` accepts (wsk checks against its Action struct).
ACTION_FIELDS = (
    "namespace",
    "name",
    "version",
    "exec",
    "annotations",
    "parameters",
    "limits",
    "publish",
    "updated",
)


def _actions_path(name: QualifiedName) -> str:
    return f"namespaces/{name.namespace_path}/actions/{name.entity_path}"


def _limits(args: argparse.Namespace) -> dict[str, int]:
    # Only limits given on the command line: on update the server keeps the others.
    given = {
        "timeout": args.timeout,
        "memory": args.memory,
        "logs": args.logsize,
        "concurrency": args.concurrency,
    }
    return {key: value for key, value in given.items() if value is not None}


def build_action_body(args: argparse.Namespace, name: QualifiedName, update: bool) -> dict:
    body: dict[str, Any] = {"namespace": name.namespace, "name": name.name}
    if args.sequence:
        components = args.sequence if isinstance(args.sequence, str) else args.file
        if not components or (isinstance(args.sequence, str) and args.file):
            raise CliError("Invalid argument(s). A sequence needs a comma-separated list of "
                           "actions.")
        if args.kind or args.main:
            raise CliError("Invalid argument(s). --kind and --main cannot be used with "
                           "--sequence.")
        body["exec"] = sequence_exec(components, name.namespace)
    elif args.copy:
        if not args.file or args.kind or args.main or args.docker:
            raise CliError("Invalid argument(s). --copy needs the ACTION to copy, and no "
                           "--kind, --main or --docker.")
        body["exec"] = {}  # filled in from the copied action (_copied)
    elif args.docker:
        if args.kind:
            raise CliError("Cannot specify both --kind and --docker at the same time.")
        body["exec"] = build_docker_exec(args.docker, args.file, args.main)
    elif args.file:
        body["exec"] = build_exec(args.file, args.kind, args.main)
    elif not update:
        # ACTION is optional to argparse only because --sequence may carry the list instead.
        raise CliError("the following arguments are required: ACTION")
    elif args.kind or args.main:
        raise CliError("Invalid argument(s). --kind and --main need a code file.")

    if args.param or args.param_file:
        body["parameters"] = as_key_value_list(collect_values(args.param, args.param_file))
    annotations = collect_values(args.annotation, args.annotation_file, "annotation")
    if args.web is not None:
        annotations.update(web_annotations(args.web))
    if args.web_secure is not None:
        annotations.update(web_secure_annotation(args.web_secure))
    if annotations:
        body["annotations"] = as_key_value_list(annotations)
    if limits := _limits(args):
        body["limits"] = limits
    if update and args.del_annotation:
        body["delAnnotations"] = list(args.del_annotation)
    return body


def sequence_exec(components: str, default_namespace: str) -> dict[str, Any]:
    """wsk sends sequence components fully qualified: ``a,pkg/b`` -> ``/ns/a``, ``/ns/pkg/b``."""
    names = [parse_qualified_name(c.strip(), default_namespace)
             for c in components.split(",") if c.strip()]
    return {"kind": "sequence", "components": [f"/{n.namespace}/{n.entity}" for n in names]}


def action_create(args: argparse.Namespace) -> int:
    return _put_action(args, update=False)


def action_update(args: argparse.Namespace) -> int:
    return _put_action(args, update=True)


def _copied(context: Context, source: str, body: dict[str, Any]) -> dict[str, Any]:
    """wsk's ``--copy``: the source action's code, parameters, annotations and limits, with
    what the command line gives over them."""
    name = context.name(source)
    original = context.call(f"Unable to get action '{name.entity}'", "GET",
                            _actions_path(name)).body
    merged = {"exec": original["exec"]}
    for field in ("parameters", "annotations"):
        given = {kv["key"]: kv["value"] for kv in body.get(field, [])}
        kept = [kv for kv in original.get(field, []) if kv["key"] not in given]
        merged[field] = kept + body.get(field, [])
    merged["limits"] = {**original.get("limits", {}), **body.get("limits", {})}
    return {**body, **merged}


def _put_action(args: argparse.Namespace, update: bool) -> int:
    context = Context.from_args(args)
    name = context.name(args.name)
    body = build_action_body(args, name, update)
    if args.copy:
        body = _copied(context, args.file, body)
    verb = "update" if update else "create"
    context.call(
        f"Unable to {verb} action '{name.entity}'",
        "PUT",
        _actions_path(name),
        query={"overwrite": update},
        body=body,
    )
    print(f"ok: {verb}d action {name.entity}")
    return EXIT_OK


def action_get(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    name = context.name(args.name)
    if args.field and not (args.summary or args.url) and args.field not in ACTION_FIELDS:
        raise CliError(f"Invalid field filter '{args.field}'.")
    action = context.call(
        f"Unable to get action '{name.entity}'",
        "GET",
        _actions_path(name),
        query={"code": False},  # wsk leaves the code out of `get`; it can be megabytes
    ).body
    if args.url:
        print(f"ok: got action {name.entity}")
        print(_action_url(context, name, action))
    elif args.summary:
        print(format_action_summary(action))
    else:
        print_got("action", name.entity, action, args.field)
    return EXIT_OK


def _action_url(context: Context, name: QualifiedName, action: dict[str, Any]) -> str:
    api = context.config.base_url.rstrip("/")
    namespace = str(action.get("namespace") or name.namespace).split("/")[0]
    if annotation(action, "web-export") is True:
        return f"{api}/web/{namespace}/{name.package or 'default'}/{name.name}"
    return f"{api}/namespaces/{namespace}/actions/{name.entity_path}"


def format_action_summary(action: dict[str, Any]) -> str:
    return format_summary(action, "action")


def action_delete(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    name = context.name(args.name)
    context.call(f"Unable to delete action '{name.entity}'", "DELETE", _actions_path(name))
    print(f"ok: deleted action {name.entity}")
    return EXIT_OK


def action_list(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    namespace, package = context.config.namespace, None
    if args.scope:
        # wsk: "/ns" lists a namespace, "/ns/pkg" or "pkg" the actions of a package.
        if args.scope.startswith("/"):
            namespace, _, package = args.scope.strip("/").partition("/")
        else:
            package = args.scope
    shown_namespace = "default" if namespace == "_" else namespace
    path = f"namespaces/{quote(namespace, safe='')}/actions"
    if package:
        path += f"/{quote(package, safe='')}/"
    actions = (
        context.call(
            f"Unable to obtain the list of actions for namespace '{shown_namespace}'",
            "GET",
            path,
            query={"limit": args.limit, "skip": args.skip},
        ).body
        or []
    )
    if args.name_sort:
        actions = sort_actions_by_name(actions)
    print(format_action_list(actions))
    return EXIT_OK


def action_invoke(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    context.require_auth()
    name = context.name(args.name)
    payload = collect_values(args.param, args.param_file)
    blocking = args.blocking or args.result
    shown = f"/{name.namespace}/{name.entity}"
    try:
        response = context.client.request(
            "POST",
            _actions_path(name),
            query={"blocking": blocking, "result": args.result},
            body=payload,
        )
    except ApiError as err:
        if blocking and _is_failed_activation(err):
            # wsk prints a failed activation like a finished one, on stderr, and fails.
            failed_id = str(err.body.get("activationId", ""))
            _print_invocation(shown, failed_id, err.body, args.result, sys.stderr)
            return EXIT_API
        raise CliError(f"Unable to invoke action '{name.entity}': {err}", EXIT_API) from err

    activation_id = _activation_id(response)
    if response.status == 202 and blocking:
        print(
            f"ok: invoked {shown}, but the request has not yet finished, with id {activation_id}",
            file=sys.stderr,
        )
        return EXIT_NOT_FINISHED
    if not blocking:
        print(f"ok: invoked {shown} with id {activation_id}")
        return EXIT_OK
    _print_invocation(shown, activation_id, response.body, args.result, sys.stdout)
    return EXIT_OK


def _activation_id(response: Answer) -> str:
    # A result that is a JSON array comes back bare; the header still names the activation.
    if isinstance(response.body, dict) and response.body.get("activationId"):
        return str(response.body["activationId"])
    return response.header("x-openwhisk-activation-id") or ""


def _print_invocation(
    shown: str, activation_id: str, body: Any, result_only: bool, out: TextIO
) -> None:
    if not result_only:
        print(f"ok: invoked {shown} with id {activation_id}", file=out)
    print_json(body, out)


def _is_failed_activation(err: ApiError) -> bool:
    """A 502/500 to a blocking invoke carries the activation (or, with ``-r``, its
    ``{"error": ...}`` result); API errors carry a transaction ``code`` instead."""
    if err.status not in (500, 502) or not isinstance(err.body, dict):
        return False
    return "activationId" in err.body or "code" not in err.body
