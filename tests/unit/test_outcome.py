"""OpenWhisk's rules for reading /init and /run answers (reference §3.1-3.2)."""

from __future__ import annotations

import json

from bus.models import StatusCode
from invoker.outcome import MAX_RESULT_BYTES, init_failure, run_outcome


def test_object_result_is_success() -> None:
    out = run_outcome(200, b'{"a": 1}')
    assert out.status == StatusCode.SUCCESS and out.result == {"a": 1}
    assert out.container_reusable


def test_array_result_is_success() -> None:
    assert run_outcome(200, b"[1, 2]").result == [1, 2]


def test_error_key_is_application_error_and_keeps_the_container() -> None:
    out = run_outcome(200, b'{"error": "bad input", "extra": 1}')
    assert out.status == StatusCode.APPLICATION_ERROR
    assert out.result == {"error": "bad input"}
    assert out.container_reusable


def test_non_200_with_error_is_developer_error_and_drops_the_container() -> None:
    out = run_outcome(502, b'{"error": "The action did not return a dictionary or array."}')
    assert out.status == StatusCode.DEVELOPER_ERROR
    assert out.result == {"error": "The action did not return a dictionary or array."}
    assert not out.container_reusable


def test_scalar_or_garbage_is_developer_error_quoting_the_body() -> None:
    for body in (b"42", b"not json"):
        out = run_outcome(200, body)
        assert out.status == StatusCode.DEVELOPER_ERROR
        assert out.result["error"] == (
            "The action did not produce a valid JSON or JSON Array response: " + body.decode())


def test_oversized_result_is_an_application_error() -> None:
    body = json.dumps({"x": "y" * MAX_RESULT_BYTES}).encode()
    out = run_outcome(200, body)
    assert out.status == StatusCode.APPLICATION_ERROR
    assert out.result["error"].startswith(
        f"The action produced a response that exceeded the allowed length: {len(body)} > ")


def test_init_failure_uses_the_error_or_quotes_the_body() -> None:
    assert init_failure(502, b'{"error": "syntax"}').result == {"error": "syntax"}
    out = init_failure(500, b"<html>")
    assert out.status == StatusCode.DEVELOPER_ERROR
    assert out.result == {"error": "The action failed during initialization: <html>"}
