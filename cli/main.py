"""``ft``: the argparse command tree and the dispatch to command handlers."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from cli import commands_actions as actions
from cli import commands_activations as activations
from cli import commands_property as properties
from cli import commands_server as server
from cli.commands_api import add_api_commands
from cli.commands_hosts import add_hosts_commands
from cli.commands_top import add_top_command
from cli.errors import EXIT_CODES_HELP, EXIT_UNREACHABLE, EXIT_USAGE, CliError
from cli.parser_admin import add_admin_commands, add_namespace_commands, add_poll_command
from cli.parser_packages import add_package_commands
from cli.parser_parts import (
    add_annotation_flags,
    add_list_flags,
    add_param_flags,
    group,
    show_help,
)
from cli.parser_triggers import add_rule_commands, add_trigger_commands
from funtainer import InvalidName, Unreachable


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage; ft keeps 2 for API errors (see the exit codes)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error: {message}\n")


def _global_flags(connection: bool = True) -> argparse.ArgumentParser:
    """Flags every client command takes, before or after the subcommand. SUPPRESS defaults keep
    a subcommand from resetting a flag that was given before it."""
    flags = argparse.ArgumentParser(add_help=False)
    global_group = flags.add_argument_group("global flags")
    if connection:
        global_group.add_argument(
            "--apihost",
            dest="global_apihost",
            metavar="HOST",
            default=argparse.SUPPRESS,
            help="whisk API HOST (default: APIHOST from ~/.wskprops, else http://127.0.0.1:3233)",
        )
        global_group.add_argument(
            "-u",
            "--auth",
            dest="global_auth",
            metavar="KEY",
            default=argparse.SUPPRESS,
            help="authorization KEY (default: AUTH from ~/.wskprops)",
        )
    global_group.add_argument(
        "-i",
        "--insecure",
        action="store_true",
        default=argparse.SUPPRESS,
        help="bypass certificate checking",
    )
    global_group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the HTTP requests and responses",
    )
    return flags


def _add_action_commands(subparsers: argparse._SubParsersAction, common: list) -> None:
    _, commands = group(subparsers, "action", "work with actions")

    for verb, handler, help_text in (
        ("create", actions.action_create, "create a new action"),
        (
            "update",
            actions.action_update,
            "update an existing action, or create an action if it does not exist",
        ),
    ):
        parser = commands.add_parser(verb, parents=common, help=help_text, description=help_text)
        parser.add_argument("name", metavar="ACTION_NAME")
        parser.add_argument(
            "file",
            metavar="ACTION",
            nargs="?",  # required unless --sequence (checked with the other flags)
            help="code file: .py, .js (kind from the extension) or .zip (needs --kind)",
        )
        parser.add_argument(
            "--sequence",
            nargs="?",
            const=True,
            metavar="ACTIONS",
            # wsk takes the list either as ACTION or right after the flag.
            help="treat ACTION (or ACTIONS) as a comma-separated list of actions forming a "
            "sequence",
        )
        parser.add_argument("--kind", metavar="KIND", help="runtime KIND, e.g. python:default")
        parser.add_argument(
            "--docker", metavar="IMAGE",
            help="run the action in IMAGE (a blackbox action; the image must be present "
            "locally and serve the action proxy, e.g. built FROM funtainer/python:3.11)")
        parser.add_argument("--main", metavar="MAIN", help="name of the action entry point")
        add_param_flags(parser)
        add_annotation_flags(parser)
        parser.add_argument(
            "-t",
            "--timeout",
            type=int,
            metavar="LIMIT",
            help="timeout LIMIT in milliseconds (default 60000)",
        )
        parser.add_argument(
            "-m",
            "--memory",
            type=int,
            metavar="LIMIT",
            help="maximum memory LIMIT in MB (default 256)",
        )
        parser.add_argument(
            "-l",
            "--logsize",
            type=int,
            metavar="LIMIT",
            help="maximum log size LIMIT in MB (default 10)",
        )
        parser.add_argument(
            "-c",
            "--concurrency",
            type=int,
            metavar="LIMIT",
            help="maximum intra-container concurrent activations (default 1)",
        )
        parser.add_argument(
            "--web",
            metavar="yes|true|raw|no|false",
            help="treat ACTION as a web action, a raw HTTP web action, or not",
        )
        parser.add_argument(
            "--web-secure", metavar="SECRET",
            help="secure the web action: SECRET is true (a new secret), false, or the secret "
                 "itself, which callers send as X-Require-Whisk-Auth")
        parser.add_argument(
            "--copy", action="store_true",
            help="treat ACTION as the name of an existing action to copy")
        if verb == "update":
            parser.add_argument(
                "--del-annotation",
                action="append",
                metavar="KEY",
                help="annotation KEY to delete (repeatable)",
            )
        else:
            parser.set_defaults(del_annotation=None)
        parser.set_defaults(handler=handler)

    invoke = commands.add_parser("invoke", parents=common, help="invoke action")
    invoke.add_argument("name", metavar="ACTION_NAME")
    add_param_flags(invoke)
    invoke.add_argument("-b", "--blocking", action="store_true", help="blocking invoke")
    invoke.add_argument(
        "-r",
        "--result",
        action="store_true",
        help="blocking invoke; show only activation result (unless there is a failure)",
    )
    invoke.set_defaults(handler=actions.action_invoke)

    get = commands.add_parser("get", parents=common, help="get action")
    get.add_argument("name", metavar="ACTION_NAME")
    get.add_argument(
        "field",
        metavar="FIELD_FILTER",
        nargs="?",
        help=f"show one field: {', '.join(actions.ACTION_FIELDS)}",
    )
    get.add_argument("-s", "--summary", action="store_true", help="summarize action details")
    get.add_argument("-r", "--url", action="store_true", help="get action url")
    get.set_defaults(handler=actions.action_get)

    delete = commands.add_parser("delete", parents=common, help="delete action")
    delete.add_argument("name", metavar="ACTION_NAME")
    delete.set_defaults(handler=actions.action_delete)

    listing = commands.add_parser(
        "list", parents=common, help="list all actions in a namespace or a package"
    )
    listing.add_argument("scope", metavar="NAMESPACE|PACKAGE_NAME", nargs="?")
    add_list_flags(listing, "actions")
    listing.add_argument("-n", "--name-sort", action="store_true", help="sort results by name")
    listing.set_defaults(handler=actions.action_list)


def _add_activation_commands(subparsers: argparse._SubParsersAction, common: list) -> None:
    _, commands = group(subparsers, "activation", "work with activations")

    listing = commands.add_parser("list", parents=common, help="list activations")
    listing.add_argument(
        "name", metavar="ACTION_NAME", nargs="?", help="only activations of this action"
    )
    add_list_flags(listing, "activations")
    listing.add_argument(
        "-f", "--full", action="store_true", help="include full activation description"
    )
    listing.add_argument(
        "--since",
        type=int,
        metavar="SINCE",
        help="only activations started at or after SINCE (epoch milliseconds)",
    )
    listing.add_argument(
        "--upto",
        type=int,
        metavar="UPTO",
        help="only activations started at or before UPTO (epoch milliseconds)",
    )
    listing.set_defaults(handler=activations.activation_list)

    last_help = "use the most recent activation"
    get = commands.add_parser("get", parents=common, help="get activation")
    get.add_argument("activation_id", metavar="ACTIVATION_ID", nargs="?")
    get.add_argument(
        "field",
        metavar="FIELD_FILTER",
        nargs="?",
        help=f"show one field: {', '.join(activations.ACTIVATION_FIELDS)}",
    )
    get.add_argument("-l", "--last", action="store_true", help=last_help)
    get.add_argument("-s", "--summary", action="store_true", help="summarize activation details")
    get.add_argument(
        "-g",
        "--logs",
        action="store_true",
        help="emit only the logs, stripped of time stamps and stream identifier",
    )
    get.set_defaults(handler=activations.activation_get)

    result = commands.add_parser("result", parents=common, help="get the result of an activation")
    result.add_argument("activation_id", metavar="ACTIVATION_ID", nargs="?")
    result.add_argument("-l", "--last", action="store_true", help=last_help)
    result.set_defaults(handler=activations.activation_result)

    logs = commands.add_parser("logs", parents=common, help="get the logs of an activation")
    logs.add_argument("activation_id", metavar="ACTIVATION_ID", nargs="?")
    logs.add_argument("-l", "--last", action="store_true", help=last_help)
    logs.add_argument(
        "-r", "--strip", action="store_true", help="strip timestamp and stream information"
    )
    logs.set_defaults(handler=activations.activation_logs)
    add_poll_command(commands, common)


def _add_property_commands(subparsers: argparse._SubParsersAction) -> None:
    # property set/get/unset reuse --apihost/--auth for the property itself, so they only take
    # the tracing flags.
    trace_flags = [_global_flags(connection=False)]
    _, commands = group(subparsers, "property", "work with whisk properties")

    set_ = commands.add_parser("set", parents=trace_flags, help="set property")
    set_.add_argument("--apihost", dest="set_apihost", metavar="HOST", help="whisk API HOST")
    set_.add_argument("-u", "--auth", dest="set_auth", metavar="KEY", help="authorization KEY")
    set_.add_argument(
        "--apiversion", dest="set_apiversion", metavar="VERSION", help="whisk API VERSION"
    )
    set_.add_argument(
        "--namespace", dest="set_namespace", metavar="NAMESPACE", help="whisk NAMESPACE"
    )
    set_.set_defaults(handler=properties.property_set)

    unset = commands.add_parser("unset", parents=trace_flags, help="unset property")
    get = commands.add_parser("get", parents=trace_flags, help="get property")
    for parser in (unset, get):
        parser.add_argument("--apihost", action="store_true", help="whisk API host")
        parser.add_argument("--auth", action="store_true", help="authorization key")
        parser.add_argument("--apiversion", action="store_true", help="whisk API version")
        parser.add_argument("--namespace", action="store_true", help="whisk namespace")
    get.add_argument("--cliversion", action="store_true", help="whisk CLI version")
    get.add_argument("--apibuild", action="store_true", help="whisk API build version")
    get.add_argument("--apibuildno", action="store_true", help="whisk API build number")
    get.add_argument("--all", action="store_true", help="all properties")
    unset.set_defaults(handler=properties.property_unset)
    get.set_defaults(handler=properties.property_get)


def _add_server_commands(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser(
        "up", help="run RabbitMQ, Redis, gateway, initializer and invoker locally"
    )
    up.add_argument("--demo", action="store_true", help="also create demo actions")
    up.add_argument("--invokers", type=int, default=1, metavar="N",
                    help="run N invokers (default 1)")
    up.add_argument("--backend", choices=["docker", "sandbox"],
                    help="how invokers make containers (default: FT_CONTAINER_BACKEND, docker)")
    up.add_argument("--quiet", action="store_true",
                    help="do not echo the children's logs (they are in <work dir>/logs)")
    up.set_defaults(handler=server.run_up)

    for name, handler, help_text in (
        ("gateway", server.run_gateway, "run the HTTP API gateway process"),
        ("initializer", server.run_initializer, "run the initializer (scheduler) process"),
        ("invoker", server.run_invoker, "run the invoker (container pool) process"),
        ("burst", server.run_remote_pool,
         "run a remote pool: an invoker that forwards work to another platform's API "
         "(FT_BURST_API_HOST, FT_BURST_AUTH) when every local invoker is full"),
    ):
        subparsers.add_parser(name, help=help_text).set_defaults(handler=handler)

    _, runtimes = group(subparsers, "runtimes", "work with runtime images")
    build = runtimes.add_parser(
        "build",
        help="build the runtime container images",
        description="Build the runtime container images. Flags not listed here are passed "
        "to the builder unchanged.",
    )
    build.add_argument("--force", action="store_true", help="rebuild images that exist")
    build.add_argument("--prefix", metavar="PREFIX", help="image name prefix")
    build.set_defaults(handler=server.runtimes_build)
    listing = runtimes.add_parser("list", help="the runtime kinds, their images and profiles")
    listing.add_argument("--memory", type=int, default=256, metavar="MB",
                         help="show the profiles at this memory limit (default 256)")
    listing.add_argument("--cpus", type=float, default=0.5,
                         help="and at this CPU share (default 0.5)")
    listing.set_defaults(handler=server.runtimes_list)

    services = subparsers.add_parser(
        "services", help="start, stop or check the local RabbitMQ and Redis"
    )
    services.add_argument("services_action", choices=["up", "down", "status"])
    services.set_defaults(handler=server.run_services)


def build_parser() -> Parser:
    common = [_global_flags()]
    parser = Parser(
        prog="ft",
        description="Funtainer: a function-as-a-service platform speaking OpenWhisk's API.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=common,
    )
    parser.add_argument("--version", action="version", version=f"ft {properties.cli_version()}")
    parser.set_defaults(handler=show_help(parser))
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_action_commands(subparsers, common)
    _add_activation_commands(subparsers, common)
    add_trigger_commands(subparsers, common)
    add_rule_commands(subparsers, common)
    add_package_commands(subparsers, common)
    add_api_commands(subparsers, common)
    add_namespace_commands(subparsers, common)
    add_admin_commands(subparsers)
    _add_property_commands(subparsers)
    _add_server_commands(subparsers)
    add_top_command(subparsers, common)
    add_hosts_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        # Only `runtimes build` forwards flags it does not declare (the builder owns them).
        if extra and args.handler is not server.runtimes_build:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.passthrough = extra
    except SystemExit as stop:  # --help, --version and usage errors
        if stop.code is None:
            return 0
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    try:
        return args.handler(args)
    except CliError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return err.exit_code
    except Unreachable as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except InvalidName as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
