"""How a conductor's continuation names its next action (initializer/conductors.py)."""

from __future__ import annotations

import pytest

from initializer.conductors import action_path


@pytest.mark.parametrize(("value", "path"), [
    ("triple", "/guest/triple"),
    ("tools/triple", "/guest/tools/triple"),
    ("/other/triple", "/other/triple"),
    ("/other/tools/triple", "/other/tools/triple"),
    ("other/tools/triple", "/other/tools/triple"),
    (" triple ", "/guest/triple"),
])
def test_names_resolve_against_the_invoking_namespace(value: str, path: str) -> None:
    assert action_path(value, "guest") == path


@pytest.mark.parametrize("value", [42, None, {"name": "x"}, "", "/", "/onlyns", "a//b",
                                   "a/b/c/d", "/a/b/c/d"])
def test_what_names_no_action(value: object) -> None:
    assert action_path(value, "guest") is None
