"""Python functions as actions: what ``client.actions.deploy(fn)`` and ``@client.action`` ship,
and the object they give back.

Only the function's own source travels (its decorators left behind), with its name as the
entry point: like any OpenWhisk Python action it receives the parameters as one dict and
returns a dict. So it imports what it uses inside its body. Declared requirements are
installed beside it with pip (``pip install --target``), on this machine, into a zip whose
``__main__.py`` is the function; they must suit the runtime's Python (3.11 on Linux).
"""

from __future__ import annotations

import inspect
import io
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funtainer.activation import Activation, result_of
from funtainer.errors import FuntainerError
from funtainer.plans import Bound, M, Plan, operation

if TYPE_CHECKING:
    from funtainer.resources import Actions


class PackagingError(FuntainerError):
    """The function's source could not be read, or its requirements not installed."""


@dataclass(frozen=True)
class FunctionOptions:
    name: str
    memory: int | None = None
    timeout: float | None = None  # seconds
    requirements: tuple[str, ...] = ()
    kind: str = "python:3"


def function_source(fn: Callable[..., Any]) -> str:
    """``fn``'s ``def`` and body, dedented, without the decorators above it."""
    if not inspect.isfunction(fn) or fn.__name__ == "<lambda>":
        raise PackagingError(f"{fn!r} is not a function defined with def")
    if inspect.iscoroutinefunction(fn):
        raise PackagingError(f"{fn.__name__} is async: the runtime calls its entry point")
    if fn.__closure__:
        names = ", ".join(fn.__code__.co_freevars)
        raise PackagingError(
            f"{fn.__name__} uses variables of an enclosing function ({names}): only its own "
            "source is shipped")
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as exc:
        raise PackagingError(f"the source of {fn.__name__} cannot be read: {exc}") from exc
    lines = source.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("def "))
    return "".join(lines[start:])


def package_function(fn: Callable[..., Any], requirements: tuple[str, ...]) -> str | bytes:
    """The action's code: the source alone, or a zip with the requirements installed."""
    source = function_source(fn)
    if not requirements:
        return source
    with tempfile.TemporaryDirectory(prefix="funtainer-deploy-") as workdir:
        root = Path(workdir)
        installed = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-warn-script-location", "--target", str(root), *requirements],
            capture_output=True, text=True, check=False)
        if installed.returncode != 0:
            raise PackagingError(
                f"pip could not install {', '.join(requirements)}: {installed.stderr.strip()}")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(root.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    archive.write(path, path.relative_to(root).as_posix())
            archive.writestr("__main__.py", source)
        return buffer.getvalue()


class Function(Bound[M]):
    """A Python function bound to its action: called directly it runs here (as a Celery task
    does); ``invoke``/``invoke_async`` run it on the platform, deploying it first if this
    process has not yet."""

    def __init__(self, actions: Actions[M], fn: Callable[..., Any],
                 options: FunctionOptions) -> None:
        super().__init__(actions._runner)
        self.actions = actions
        self.fn = fn
        self.options = options
        self.deployed = False
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def __repr__(self) -> str:
        return f"<Function {self.options.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    @operation
    def deploy(self) -> Plan[Function[M]]:
        """Ship the function now (again): after its source or requirements changed."""
        yield from self.actions._deploy(self)
        return self

    @operation
    def invoke(self, **params: Any) -> Plan[Any]:
        """Run on the platform and return the result (``ActivationFailed`` if it failed)."""
        if not self.deployed:
            yield from self.actions._deploy(self)
        return result_of((yield from self.actions._run(self.options.name, params, None)))

    @operation
    def invoke_async(self, **params: Any) -> Plan[Activation[M]]:
        """Start it on the platform; the handle waits for the result."""
        if not self.deployed:
            yield from self.actions._deploy(self)
        return (yield from self.actions._start(self.options.name, params))
