"""Turning ``-p KEY VALUE`` / ``-P FILE`` arguments and code files into OpenWhisk request bodies."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

from cli.errors import CliError

# wsk's table: a code file's extension names its runtime family; archives need --kind.
EXTENSION_KINDS: dict[str, str] = {
    ".py": "python:default",
    ".js": "nodejs:default",
    ".swift": "swift:default",
    ".php": "php:default",
    ".rb": "ruby:default",
    ".go": "go:default",
    ".rs": "rust:default",
    ".jar": "java:default",
}
BINARY_EXTENSIONS = {".zip", ".jar"}


def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # NaN/Infinity are not JSON, and Go's decoder in wsk refuses them


def parse_value(text: str) -> Any:
    """wsk's rule: a value that is valid JSON is sent as that JSON, anything else as a string
    (so ``3`` is a number, ``true`` a boolean, ``'"3"'`` the string "3", ``hello`` a string)."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


def read_json_object_file(path: str, what: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise CliError(
            f"File '{path}' is not a valid file or it does not exist: {err.strerror}"
        ) from err
    try:
        value = json.loads(text)
    except ValueError as err:
        raise CliError(f"Invalid {what} file '{path}': {err}") from err
    if not isinstance(value, dict):
        raise CliError(f"Invalid {what} file '{path}': the content must be a JSON object.")
    return value


def collect_values(
    pairs: list[list[str]] | None, json_file: str | None, what: str = "parameter"
) -> dict[str, Any]:
    """The file's keys first, then ``-p`` pairs in order; a later key overrides an earlier one."""
    values: dict[str, Any] = read_json_object_file(json_file, what) if json_file else {}
    for key, text in pairs or []:
        values[key] = parse_value(text)
    return values


def as_key_value_list(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": value} for key, value in values.items()]


def kind_for_file(path: str, explicit_kind: str | None) -> str:
    if explicit_kind:
        return explicit_kind
    extension = Path(path).suffix.lower()
    if extension == ".zip":
        raise CliError(
            "creating an action from a .zip artifact requires specifying the action kind "
            "explicitly (--kind)"
        )
    try:
        return EXTENSION_KINDS[extension]
    except KeyError:
        shown = extension or Path(path).name
        raise CliError(
            f"'{shown}' is not a supported action runtime; give the kind with --kind"
        ) from None


def read_code(path: str) -> str:
    """A code file as ``exec.code``: text for source files, base64 for archives."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise CliError(
            f"File '{path}' is not a valid file or it does not exist: {err.strerror}"
        ) from err
    if Path(path).suffix.lower() in BINARY_EXTENSIONS:
        return base64.b64encode(raw).decode()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(
            f"Unable to read the file '{path}': it is not UTF-8 text "
            "(archives must end in .zip)"
        ) from None


def build_docker_exec(image: str, path: str | None, main: str | None) -> dict[str, Any]:
    """wsk's ``--docker IMAGE [FILE]``: a blackbox action, its code optional."""
    exec_: dict[str, Any] = {"kind": "blackbox", "image": image}
    if path:
        exec_["code"] = read_code(path)
    if main:
        exec_["main"] = main
    return exec_


def build_exec(path: str, kind: str | None, main: str | None) -> dict[str, Any]:
    """The ``exec`` object for a code file."""
    code = read_code(path)
    resolved_kind = kind_for_file(path, kind)
    if resolved_kind.startswith("java") and not main:
        raise CliError(
            "Java actions require --main to specify the fully-qualified name of the main class"
        )
    exec_: dict[str, Any] = {"kind": resolved_kind, "code": code}
    if main:
        exec_["main"] = main
    return exec_


def web_annotations(web: str) -> dict[str, Any]:
    """wsk's ``--web`` mapping onto the annotations the gateway's web-action route reads."""
    choice = web.lower()
    if choice in ("true", "yes"):
        return {"web-export": True, "raw-http": False, "final": True}
    if choice == "raw":
        return {"web-export": True, "raw-http": True, "final": True}
    if choice in ("false", "no"):
        return {"web-export": False, "raw-http": False, "final": False}
    raise CliError(
        f"Invalid argument '{web}' for --web flag. Valid input consist of 'yes', 'true', "
        "'raw', 'false', or 'no'."
    )


def web_secure_annotation(secret: str) -> dict[str, Any]:
    """wsk's ``--web-secure``: ``true`` makes up a secret, ``false`` lifts it, anything else
    is the secret (callers send it as ``X-Require-Whisk-Auth``)."""
    choice = secret.lower()
    if choice == "true":
        return {"require-whisk-auth": secrets.randbelow(2**53 - 1) + 1}
    if choice == "false":
        return {"require-whisk-auth": False}
    return {"require-whisk-auth": secret}
