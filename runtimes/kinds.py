"""The runtime kinds this platform runs, their aliases and images."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Runtime:
    kind: str
    family: str  # folder under runtimes/ holding the Dockerfile and proxy
    image_name: str  # image is "<prefix>/<image_name>"
    default: bool = False


# ``default`` marks the kind a family's ``<family>:default`` alias resolves to.
RUNTIMES: dict[str, Runtime] = {
    "python:3.11": Runtime("python:3.11", "python", "python:3.11", default=True),
    # Debian bookworm's nodejs, from the same debootstrap base as python3.
    "nodejs:18": Runtime("nodejs:18", "nodejs", "nodejs:18", default=True),
}

ALIASES: dict[str, str] = {
    "python:3": "python:3.11",
    "python:default": "python:3.11",
    "nodejs": "nodejs:18",
    "nodejs:default": "nodejs:18",
}


def resolve_kind(kind: str) -> str | None:
    """The concrete kind for ``kind`` (aliases and ``<family>:default`` resolved), or None."""
    kind = kind.strip().lower()
    if kind in RUNTIMES:
        return kind
    return ALIASES.get(kind)


BLACKBOX = "blackbox"
_BLACKBOX_PREFIX = f"{BLACKBOX}:"


def image_for(kind: str, prefix: str = "funtainer") -> str:
    """The image of a container kind: a runtime's, or the one a blackbox kind names."""
    if kind.startswith(_BLACKBOX_PREFIX):
        return kind.removeprefix(_BLACKBOX_PREFIX)
    return f"{prefix}/{RUNTIMES[kind].image_name}"


def supported_kinds() -> list[str]:
    return sorted([*RUNTIMES, *ALIASES])
