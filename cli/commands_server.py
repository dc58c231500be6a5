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


def run_remote_pool(args: argparse.Namespace) -> int:
    return _exit_code(_entry_point("burst", "invoker.remote_pool", "run")())


def runtimes_build(args: argparse.Namespace) -> int:
    # runtimes.build.main parses its own argv: hand it back the flags ft declared (for --help)
    # plus any it did not.
    argv_rest: list[str] = ["--force"] if args.force else []
    if args.prefix:
        argv_rest += ["--prefix", args.prefix]
    argv_rest += getattr(args, "passthrough", [])
    return _exit_code(_entry_point("runtimes build", "runtimes.build", "main")(argv_rest))


def runtimes_list(args: argparse.Namespace) -> int:
    """Each kind, its image and whether it is built, and what its profile sets at the given
    limits (runtimes/profiles.py)."""
    from bus.config import get_settings
    from runtimes.kinds import ALIASES, RUNTIMES, image_for
    from runtimes.profiles import describe

    prefix = get_settings().image_prefix
    images = _local_images()
    aliases = {kind: sorted(a for a, k in ALIASES.items() if k == kind) for kind in RUNTIMES}
    print(f"runtime profiles at memory {args.memory} MB, {args.cpus:g} CPUs:")
    for kind in sorted(RUNTIMES):
        image = image_for(kind, prefix)
        if images is None:
            built = "engine not reachable"
        else:
            built = "built" if image in images else "not built"
        also = f" (also {', '.join(aliases[kind])})" if aliases[kind] else ""
        print(f"{kind:<14}{image:<26}{built}{also}")
        print(f"{'':<14}{describe(kind, args.memory, args.cpus)}")
    return 0


def _local_images() -> set[str] | None:
    import docker

    from bus.config import get_settings

    try:
        client = docker.APIClient(base_url=get_settings().docker_url, timeout=5)
        try:
            tags = [tag for image in client.images() for tag in image.get("RepoTags") or []]
            return {*tags, *(tag.removesuffix(":latest") for tag in tags)}
        finally:
            client.close()
    except Exception:
        return None


def run_services(args: argparse.Namespace) -> int:
    return _exit_code(_entry_point("services", "cli.services", "main")(args))
