"""The ``~/.wskprops`` file shared with wsk, and the effective client settings derived from it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PROPS_FILE = "~/.wskprops"
DEFAULT_APIHOST = "http://127.0.0.1:3233"  # the gateway's default listen address
DEFAULT_NAMESPACE = "_"
DEFAULT_APIVERSION = "v1"

APIHOST = "APIHOST"
AUTH = "AUTH"
NAMESPACE = "NAMESPACE"
APIVERSION = "APIVERSION"


def props_path() -> Path:
    """``$WSK_CONFIG_FILE`` if set (wsk's override), else ``~/.wskprops``."""
    return Path(os.environ.get("WSK_CONFIG_FILE") or DEFAULT_PROPS_FILE).expanduser()


def read_props(path: Path | None = None) -> dict[str, str]:
    """``KEY=VALUE`` lines in file order. Keys this client does not know (``APIGW_ACCESS_TOKEN``,
    ``CERT``...) are kept so that writing the file back never loses another tool's settings."""
    path = path or props_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            props[key.strip()] = value.strip()
    return props


def write_props(props: dict[str, str], path: Path | None = None) -> None:
    path = path or props_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{key}={value}\n" for key, value in props.items())
    # The file holds the auth key: readable by its owner only, also when it existed before.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(body)


@dataclass(frozen=True)
class ClientConfig:
    apihost: str
    auth: str | None
    namespace: str
    apiversion: str


def load_config(apihost: str | None = None, auth: str | None = None) -> ClientConfig:
    """Command-line flags win over the props file, which wins over the defaults."""
    props = read_props()
    return ClientConfig(
        apihost=apihost or props.get(APIHOST) or DEFAULT_APIHOST,
        auth=auth or props.get(AUTH) or None,
        namespace=props.get(NAMESPACE) or DEFAULT_NAMESPACE,
        apiversion=props.get(APIVERSION) or DEFAULT_APIVERSION,
    )
