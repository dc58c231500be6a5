"""The compatibility suites run against the same real cluster as the integration tests: its
fixtures (``cluster``, ``http``...) are re-exported here."""

from tests.integration.conftest import (  # noqa: F401  (fixtures, used by name)
    cluster,
    http,
    initializers,
)
