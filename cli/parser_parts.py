"""argparse pieces every command group uses: groups with help, and wsk's common flags."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]


def show_help(parser: argparse.ArgumentParser) -> Handler:
    def show(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    return show


def group(
    subparsers: argparse._SubParsersAction, name: str, help_text: str
) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=show_help(parser))
    children = parser.add_subparsers(title="commands", metavar="COMMAND")
    return parser, children


def add_param_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("KEY", "VALUE"),
        help="parameter; VALUE is parsed as JSON when it is valid JSON, else taken as a string",
    )
    parser.add_argument(
        "-P", "--param-file", metavar="FILE", help="FILE containing parameter values in JSON format"
    )


def add_annotation_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-a",
        "--annotation",
        nargs=2,
        action="append",
        metavar=("KEY", "VALUE"),
        help="annotation; VALUE is parsed as JSON when it is valid JSON",
    )
    parser.add_argument(
        "-A",
        "--annotation-file",
        metavar="FILE",
        help="FILE containing annotation values in JSON format",
    )


def add_list_flags(parser: argparse.ArgumentParser, collection: str) -> None:
    parser.add_argument(
        "-s",
        "--skip",
        type=int,
        default=0,
        metavar="SKIP",
        help=f"exclude the first SKIP number of {collection} from the result",
    )
    parser.add_argument(
        "-l",
        "--limit",
        type=int,
        default=30,
        metavar="LIMIT",
        help=f"only return LIMIT number of {collection} (default 30, max 200)",
    )
