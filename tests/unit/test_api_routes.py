"""Which route serves a call, and what makes a valid route path (gateway/api_routes.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gateway.api_routes import Api, Route, _normal_path
from gateway.errors import ApiError


def test_a_route_matches_its_method_and_path_and_names_its_parameters() -> None:
    route = Route("/books/{id}/pages/{page}", "get", "guest", "books")
    assert route.matches("get", "/books/42/pages/7") == {"id": "42", "page": "7"}
    assert route.matches("get", "/books/42/pages/7/") == {"id": "42", "page": "7"}
    assert route.matches("post", "/books/42/pages/7") is None
    assert route.matches("get", "/books/42/pages") is None
    assert route.matches("get", "/books/42/chapters/7") is None
    assert Route("/", "get", "guest", "home").matches("get", "/") == {}


@pytest.mark.parametrize(("given", "normal"), [
    ("/a", "/a"), ("/a/b/", "/a/b"), ("//a//{id}", "/a/{id}"), ("/", "/"),
])
def test_route_paths_are_normalised(given: str, normal: str) -> None:
    assert _normal_path(given, "path") == normal


@pytest.mark.parametrize("given", ["a", "", "/a b", "/{1x}", "/{id", "/a?b", None, 5])
def test_bad_route_paths_are_400(given: object) -> None:
    with pytest.raises(ApiError) as refused:
        _normal_path(given, "path")
    assert refused.value.status == 400


def test_apis_survive_their_json_round_trip() -> None:
    api = Api("/shop", "shop", [Route("/b/{id}", "get", "guest", "pkg/b", "text")])
    assert Api.from_json(json.dumps(dataclasses.asdict(api))) == api
