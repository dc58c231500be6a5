"""``ft package create|update|bind|get|delete|list`` with wsk's flags, requests and output."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from cli.commands_triggers import list_namespace
from cli.context import Context
from cli.errors import EXIT_OK, CliError
from cli.output import format_summary, full_name, print_got, sort_by_name
from cli.params import as_key_value_list, collect_values
from funtainer.names import QualifiedName

# Fields `ft package get NAME FIELD` accepts (wsk checks against its Package struct).
PACKAGE_FIELDS = (
    "namespace", "name", "version", "publish", "binding", "parameters", "annotations", "updated",
    "actions", "feeds",
)
_SHARED = {"yes": True, "no": False}


def packages_path(name: QualifiedName) -> str:
    return f"namespaces/{name.namespace_path}/packages/{quote(name.name, safe='')}"


def _package_name(context: Context, text: str) -> QualifiedName:
    name = context.name(text)
    if name.package is not None:  # /ns/pkg/x: packages do not nest
        raise CliError(f"'{text}' is not a valid package name.")
    return name


def _body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    params = collect_values(args.param, args.param_file)
    annotations = collect_values(args.annotation, args.annotation_file, "annotation")
    if params:
        body["parameters"] = as_key_value_list(params)
    if annotations:
        body["annotations"] = as_key_value_list(annotations)
    shared = getattr(args, "shared", None)
    if shared is not None:
        body["publish"] = _SHARED[shared]
    return body


def _put(args: argparse.Namespace, overwrite: bool, verb: str) -> int:
    context = Context.from_args(args)
    name = _package_name(context, args.name)
    context.call(
        f"Unable to {verb} package '{name.name}'", "PUT", packages_path(name),
        query={"overwrite": overwrite}, body=_body(args),
    )
    print(f"ok: {verb}d package {name.name}")
    return EXIT_OK


def package_create(args: argparse.Namespace) -> int:
    return _put(args, overwrite=False, verb="create")


def package_update(args: argparse.Namespace) -> int:
    return _put(args, overwrite=True, verb="update")


def package_bind(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    bound = _package_name(context, args.package)
    binding = _package_name(context, args.binding)
    body = {**_body(args), "binding": {"namespace": bound.namespace, "name": bound.name}}
    context.call(
        "Binding creation failed", "PUT", packages_path(binding),
        query={"overwrite": bool(args.overwrite)}, body=body,
    )
    print(f"ok: created binding {binding.name}")
    return EXIT_OK


def package_get(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    name = _package_name(context, args.name)
    if args.field and not args.summary and args.field not in PACKAGE_FIELDS:
        raise CliError(f"Invalid field filter '{args.field}'.")
    package = context.call(
        f"Unable to get package '{name.name}'", "GET", packages_path(name)
    ).body
    if args.summary:
        print(format_summary(package, "package"))
    else:
        print_got("package", name.name, package, args.field)
    return EXIT_OK


def package_delete(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    name = _package_name(context, args.name)
    context.call(f"Unable to delete package '{name.name}'", "DELETE", packages_path(name))
    print(f"ok: deleted package {name.name}")
    return EXIT_OK


def format_package_list(packages: list[dict[str, Any]]) -> str:
    rows = [f"{full_name(p):<70} {'shared' if p.get('publish') else 'private'}"
            for p in packages]
    return "\n".join(["packages", *rows])


def package_list(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    namespace = list_namespace(context, args.namespace)
    shown = "default" if namespace == "_" else namespace
    packages = context.call(
        f"Unable to obtain the list of packages for namespace '{shown}'",
        "GET", f"namespaces/{quote(namespace, safe='')}/packages",
        query={"limit": args.limit, "skip": args.skip},
    ).body or []
    print(format_package_list(sort_by_name(packages) if args.name_sort else packages))
    return EXIT_OK
