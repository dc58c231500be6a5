"""What every client command needs: the effective settings, the HTTP client and name parsing."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from cli.client import cli_client
from cli.errors import EXIT_API, EXIT_USAGE, CliError
from funtainer import ApiError, Client
from funtainer.config import ClientConfig, load_config
from funtainer.names import QualifiedName, parse_qualified_name
from funtainer.plans import Answer


@dataclass
class Context:
    config: ClientConfig
    client: Client

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Context:
        # Global flags use SUPPRESS defaults (so a subcommand never resets a flag given before
        # it), hence getattr with a fallback.
        config = load_config(
            apihost=getattr(args, "global_apihost", None),
            auth=getattr(args, "global_auth", None),
        )
        client = cli_client(
            config,
            insecure=getattr(args, "insecure", False),
            verbose=getattr(args, "verbose", False),
        )
        return cls(config, client)

    def name(self, text: str) -> QualifiedName:
        return parse_qualified_name(text, self.config.namespace)

    def require_auth(self) -> None:
        if not self.config.auth:
            raise CliError(
                "Authorization key is not configured (--auth is required). "
                "Set it with 'ft property set --auth KEY'.",
                EXIT_USAGE,
            )

    def call(
        self,
        failure: str,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
    ) -> Answer:
        """One authenticated request; an API error becomes ``error: <failure>: <server text>``."""
        self.require_auth()
        try:
            return self.client.request(method, path, query=query, body=body)
        except ApiError as err:
            raise CliError(f"{failure}: {err}", EXIT_API) from err
