"""The platform's own processes, started through ``ft``. Their modules are imported only when
their command runs, so the client commands work on a machine holding just the client."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from cli.errors import EXIT_OK, CliError


def _entry_point(command: str, module_name: str, attribute: str) -> Callable[..., Any]:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        # Only a missing target module means "not installed"; a missing dependency *inside*
        # it is a real bug and must surface with its traceback.
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise CliError(
                f"'ft {command}' is not available in this installation ({module_name} is missing)."
            ) from err
        raise
    return getattr(module, attribute)


def _exit_code(returned: Any) -> int:
    return returned if isinstance(returned, int) else EXIT_OK


def run_up(args: argparse.Namespace) -> int:
    return _exit_code(_entry_point("up", "cli.up", "main")(args))


def run_gateway(args: argparse.Namespace) -> int:
    return _exit_code(_entry_point("gateway", "gateway.app", "run")())


def run_initializer(args: argparse.Namespace) -> int:
    return _exit_code(_entry_point("initializer", "initializer.service", "run")())


def run_invoker(args: argparse.Namespace) -> int:
    return _exit_code(_entry_point("invoker", "invoker.service", "run")())


def runtimes_build(args: argparse.Namespace) -> int:
    # runtimes.build.main parses its own argv: hand it back the flags ft declared (for --help)
    # plus any it did not.
    argv_rest: list[str] = ["--force"] if args.force else []
    if args.prefix:
        argv_rest += ["--prefix", args.prefix]
    argv_rest += getattr(args, "passthrough", [])
    return _exit_code(_entry_point("runtimes build", "runtimes.build", "main")(argv_rest))


def run_services(args: argparse.Namespace) -> int:
    return _exit_code(_entry_point("services", "cli.services", "main")(args))
