"""``ft api create|get|list|delete``: API routes (gateway/api_routes.py) with ``wsk api``'s
arguments and output, through the same apimgmt calls wsk makes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.context import Context
from cli.errors import EXIT_OK, EXIT_USAGE, CliError
from cli.parser_parts import group

MGMT = "web/whisk.system/apimgmt"
VERBS = ("get", "post", "put", "patch", "delete", "head", "options")
RESPONSE_TYPES = ("json", "http", "html", "text", "svg")


def api_create(args: argparse.Namespace) -> int:
    """``ft api create [BASE_PATH] API_PATH API_VERB ACTION``: the base path is optional;
    or ``ft api create --config-file SWAGGER``: a whole API."""
    if args.config_file:
        if args.parts:
            raise CliError("An API is created from either a configuration file or arguments.",
                           EXIT_USAGE)
        return _create_from_swagger(args)
    if len(args.parts) == 3:
        base, path, verb, action = "/", *args.parts
    elif len(args.parts) == 4:
        base, path, verb, action = args.parts
    else:
        raise CliError("Invalid argument(s). Specify [BASE_PATH] API_PATH API_VERB ACTION.",
                       EXIT_USAGE)
    if verb.lower() not in VERBS:
        raise CliError(f"'{verb}' is not a valid API verb. Valid values are: "
                       f"{', '.join(v.upper() for v in VERBS)}", EXIT_USAGE)
    context = Context.from_args(args)
    name = context.name(action)
    apidoc: dict[str, Any] = {
        "namespace": "_", "gatewayBasePath": base, "gatewayPath": path,
        "gatewayMethod": verb.upper(), "id": f"API:_:{base}",
        "action": {"name": name.entity, "namespace": name.namespace, "backendMethod": "GET",
                   "backendUrl": f"{context.config.base_url}web/{name.namespace}/"
                                 f"{_with_package(name.entity)}.{args.response_type}"},
    }
    if args.apiname:
        apidoc["apiName"] = args.apiname
    created = context.call("Unable to create API", "POST", f"{MGMT}/createApi.http",
                           query={"responsetype": args.response_type},
                           body={"apidoc": apidoc}).body
    print(f"ok: created API {base.rstrip('/')}{path} {verb.upper()} for action "
          f"/{name.namespace}/{name.entity}")
    print(f"{created['gwApiUrl']}{path}")
    return EXIT_OK


def _create_from_swagger(args: argparse.Namespace) -> int:
    try:
        swagger = Path(args.config_file).read_text(encoding="utf-8")
        json.loads(swagger)
    except (OSError, ValueError) as exc:
        raise CliError(f"Unable to read the configuration file {args.config_file}: {exc}",
                       EXIT_USAGE) from exc
    context = Context.from_args(args)
    created = context.call("Unable to create API", "POST", f"{MGMT}/createApi.http",
                           body={"apidoc": {"namespace": "_", "swagger": swagger}}).body
    for path, verb, action in _routes(created["apidoc"]):
        print(f"ok: created API {created['apidoc']['basePath'].rstrip('/')}{path} "
              f"{verb.upper()} for action {action}")
        print(f"{created['gwApiUrl']}{path}")
    return EXIT_OK


def _routes(apidoc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(path, verb, /namespace[/package]/action)`` of each operation of a Swagger doc."""
    found = []
    for path, operations in sorted(apidoc["paths"].items()):
        for verb, operation in sorted(operations.items()):
            target = operation["x-openwhisk"]
            action = "/".join(filter(None, (target["namespace"], target["package"],
                                            target["action"])))
            found.append((path, verb, f"/{action}"))
    return found


def _with_package(entity: str) -> str:
    return entity if "/" in entity else f"default/{entity}"


def _apis(context: Context, query: dict[str, Any]) -> list[dict[str, Any]]:
    body = context.call("Unable to obtain the API list", "GET", f"{MGMT}/getApi.http",
                        query=query).body
    return list(body.get("apis", []))


def api_get(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    apis = _apis(context, {"basepath": args.base})
    if not apis:
        raise CliError(f"Unable to get API '{args.base}': API does not exist", EXIT_USAGE)
    print(json.dumps(apis[0]["value"]["apidoc"], indent=4))
    return EXIT_OK


def api_list(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    query: dict[str, Any] = {"limit": args.limit, "skip": args.skip}
    for key, value in (("basepath", args.base), ("relpath", args.path),
                       ("operation", args.verb)):
        if value:
            query[key] = value
    rows = []
    for entry in _apis(context, query):
        value = entry["value"]
        doc = value["apidoc"]
        rows.extend((action, verb, doc["info"]["title"], f"{value['gwApiUrl']}{path}")
                    for path, verb, action in _routes(doc))
    print("ok: APIs")
    print(f"{'Action':<45} {'Verb':>7} {'API Name':>20}  URL")
    for action, verb, api_name, url in rows:
        print(f"{action:<45} {verb:>7} {api_name:>20}  {url}")
    return EXIT_OK


def api_delete(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    query: dict[str, Any] = {"basepath": args.base, "force": True}
    if args.path:
        query["relpath"] = args.path
    if args.verb:
        query["operation"] = args.verb.upper()
    context.call("Unable to delete API", "DELETE", f"{MGMT}/deleteApi.http", query=query)
    if args.path:
        verb = f" {args.verb.upper()}" if args.verb else ""
        print(f"ok: deleted {args.path}{verb} from {args.base}")
    else:
        print(f"ok: deleted API {args.base}")
    return EXIT_OK


def add_api_commands(subparsers: argparse._SubParsersAction, common: list) -> None:
    _, commands = group(subparsers, "api", "work with APIs (web actions at REST routes)")

    create = commands.add_parser(
        "create", parents=common, help="create a new API",
        usage="ft api create [options] [BASE_PATH] API_PATH API_VERB ACTION")
    create.add_argument("parts", nargs="*", metavar="ARGUMENT",
                        help="[BASE_PATH] API_PATH API_VERB ACTION, as wsk takes them")
    create.add_argument("-c", "--config-file", metavar="FILE",
                        help="a Swagger 2.0 file (JSON) declaring the whole API, as "
                             "'ft api get' prints it")
    create.add_argument("-n", "--apiname", help="friendly name of the API")
    create.add_argument("--response-type", default="json", choices=RESPONSE_TYPES,
                        help="how the action's result is answered (default json)")
    create.set_defaults(handler=api_create)

    get = commands.add_parser("get", parents=common, help="get API details (Swagger)")
    get.add_argument("base", metavar="BASE_PATH|API_NAME")
    get.set_defaults(handler=api_get)

    listing = commands.add_parser("list", parents=common, help="list APIs")
    listing.add_argument("base", metavar="BASE_PATH|API_NAME", nargs="?")
    listing.add_argument("path", metavar="API_PATH", nargs="?")
    listing.add_argument("verb", metavar="API_VERB", nargs="?")
    listing.add_argument("-l", "--limit", type=int, default=30, help="at most this many APIs")
    listing.add_argument("-s", "--skip", type=int, default=0, help="skip this many APIs")
    listing.set_defaults(handler=api_list)

    delete = commands.add_parser("delete", parents=common, help="delete an API")
    delete.add_argument("base", metavar="BASE_PATH|API_NAME")
    delete.add_argument("path", metavar="API_PATH", nargs="?")
    delete.add_argument("verb", metavar="API_VERB", nargs="?")
    delete.set_defaults(handler=api_delete)
