"""Where the client finds its API host and key: the ``~/.wskprops`` file shared with wsk, and
the ``__OW_*`` variables the platform gives an action that asked for a key."""

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


# Inside an action annotated provide-api-key (as OpenWhisk's npm client reads them).
ENV_APIHOST = "__OW_API_HOST"
ENV_AUTH = "__OW_API_KEY"
ENV_NAMESPACE = "__OW_NAMESPACE"


@dataclass(frozen=True)
class ClientConfig:
    apihost: str
    auth: str | None
    namespace: str
    apiversion: str

    @property
    def base_url(self) -> str:
        """``<apihost>/api/<version>/``, under which every API path lies."""
        return f"{normalize_apihost(self.apihost)}/api/{self.apiversion}/"


def normalize_apihost(apihost: str) -> str:
    """wsk's rule: a host without a scheme means https."""
    apihost = apihost.strip().rstrip("/")
    if "://" not in apihost:
        apihost = "https://" + apihost
    return apihost


def load_config(
    apihost: str | None = None, auth: str | None = None, namespace: str | None = None
) -> ClientConfig:
    """What is given wins over the ``__OW_*`` variables, which win over the props file, which
    wins over the defaults."""
    props = read_props()
    env = os.environ
    return ClientConfig(
        apihost=apihost or env.get(ENV_APIHOST) or props.get(APIHOST) or DEFAULT_APIHOST,
        auth=auth or env.get(ENV_AUTH) or props.get(AUTH) or None,
        namespace=(namespace or env.get(ENV_NAMESPACE) or props.get(NAMESPACE)
                   or DEFAULT_NAMESPACE),
        apiversion=props.get(APIVERSION) or DEFAULT_APIVERSION,
    )
