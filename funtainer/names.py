"""Qualified entity names as wsk accepts them: ``name``, ``pkg/name``, ``/ns/name``,
``/ns/pkg/name`` and ``ns/pkg/name``."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from funtainer.errors import FuntainerError


class InvalidName(FuntainerError, ValueError):
    """Not a name of an entity."""


@dataclass(frozen=True)
class QualifiedName:
    namespace: str
    package: str | None
    name: str

    @property
    def entity(self) -> str:
        """The part after the namespace, as the REST path and wsk's messages use it."""
        return f"{self.package}/{self.name}" if self.package else self.name

    @property
    def entity_path(self) -> str:
        """``entity`` percent-encoded per segment, so a ``?`` or space in a name stays a name."""
        return "/".join(urllib.parse.quote(part, safe="") for part in self.entity.split("/"))

    @property
    def namespace_path(self) -> str:
        return urllib.parse.quote(self.namespace, safe="")


def parse_qualified_name(text: str, default_namespace: str) -> QualifiedName:
    explicit_namespace = text.startswith("/")
    parts = text.strip("/").split("/") if text.strip("/") else []
    if not parts or any(not part for part in parts) or len(parts) > 3:
        raise InvalidName(f"'{text}' is not a valid qualified name.")
    if explicit_namespace:
        if len(parts) == 1:
            raise InvalidName(f"'{text}' is not a valid qualified name: an entity name is missing.")
        namespace, rest = parts[0], parts[1:]
    elif len(parts) == 3:
        namespace, rest = parts[0], parts[1:]
    else:
        namespace, rest = default_namespace, parts
    package = rest[0] if len(rest) == 2 else None
    return QualifiedName(namespace, package, rest[-1])
