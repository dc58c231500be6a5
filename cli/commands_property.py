"""``ft property set|unset|get``: the ``~/.wskprops`` settings, with wsk's messages."""

from __future__ import annotations

import argparse
from importlib import metadata

from cli.context import Context
from cli.errors import EXIT_API, EXIT_OK, EXIT_UNREACHABLE, CliError
from funtainer import ApiError, Unreachable
from funtainer import config as wskprops


def cli_version() -> str:
    try:
        return metadata.version("funtainer")
    except metadata.PackageNotFoundError:
        return "unknown"


def property_set(args: argparse.Namespace) -> int:
    props = wskprops.read_props()
    messages: list[str] = []
    # wsk's order of checks and messages: auth, API host, API version, namespace.
    if args.set_auth:
        props[wskprops.AUTH] = args.set_auth
        messages.append("ok: whisk auth set. Run 'ft property get --auth' to see the new value.")
    if args.set_apihost:
        props[wskprops.APIHOST] = args.set_apihost
        messages.append(f"ok: whisk API host set to {args.set_apihost}")
    if args.set_apiversion:
        props[wskprops.APIVERSION] = args.set_apiversion
        messages.append(f"ok: whisk API version set to {args.set_apiversion}")
    if args.set_namespace:
        props[wskprops.NAMESPACE] = args.set_namespace
        messages.append(f"ok: whisk namespace set to {args.set_namespace}")
    if not messages:
        raise CliError(
            "Invalid argument(s). Give at least one of --apihost, --auth, --apiversion, "
            "--namespace."
        )
    try:
        wskprops.write_props(props)
    except OSError as err:
        raise CliError(f"Unable to set the property value(s): {err}") from err
    print("\n".join(messages))
    return EXIT_OK


def property_unset(args: argparse.Namespace) -> int:
    props = wskprops.read_props()
    messages: list[str] = []
    if args.auth:
        props.pop(wskprops.AUTH, None)
        messages.append("ok: whisk auth unset.")
    if args.namespace:
        props.pop(wskprops.NAMESPACE, None)
        messages.append(
            "ok: whisk namespace unset; the default value of "
            f"{wskprops.DEFAULT_NAMESPACE} will be used."
        )
    if args.apihost:
        props.pop(wskprops.APIHOST, None)
        messages.append("ok: whisk API host unset.")
    if args.apiversion:
        props.pop(wskprops.APIVERSION, None)
        messages.append(
            "ok: whisk API version unset; the default value of "
            f"{wskprops.DEFAULT_APIVERSION} will be used."
        )
    if not messages:
        raise CliError(
            "Invalid argument(s). Give at least one of --apihost, --auth, --apiversion, "
            "--namespace."
        )
    try:
        wskprops.write_props(props)
    except OSError as err:
        raise CliError(f"Unable to unset the property value: {err}") from err
    print("\n".join(messages))
    return EXIT_OK


def property_get(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    config, client = context.config, context.client
    chosen = [
        args.auth,
        args.apihost,
        args.apiversion,
        args.namespace,
        args.cliversion,
        args.apibuild,
        args.apibuildno,
    ]
    show_all = args.all or not any(chosen)
    # wsk's labels and tab alignment, line for line.
    if show_all or args.auth:
        print(f"whisk auth\t\t{config.auth or ''}")
    if show_all or args.apihost:
        print(f"whisk API host\t\t{config.apihost}")
    if show_all or args.apiversion:
        print(f"whisk API version\t{config.apiversion}")
    if show_all or args.namespace:
        print(f"whisk namespace\t\t{config.namespace}")
    if show_all or args.cliversion:
        print(f"whisk CLI version\t{cli_version()}")
    if not (show_all or args.apibuild or args.apibuildno):
        return EXIT_OK

    failure: CliError | None = None
    build = build_number = "Unknown"
    try:
        info = client.request("GET", "", auth=False).body
        if isinstance(info, dict):
            build = str(info.get("build", "Unknown"))
            build_number = str(info.get("buildno", "Unknown"))
    except ApiError as err:
        failure = CliError(f"Unable to obtain API build information: {err}", EXIT_API)
    except Unreachable as err:
        failure = CliError(f"Unable to obtain API build information: {err}", EXIT_UNREACHABLE)
    if show_all or args.apibuild:
        print(f"whisk API build\t\t{build}")
    if show_all or args.apibuildno:
        print(f"whisk API build number\t{build_number}")
    if failure:
        raise failure
    return EXIT_OK
