"""``ft trigger`` and ``ft rule`` driven through ``main()`` against the recording fake API
server of ``test_cli``: the exact requests each command sends, and what it prints."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_cli import ACTIVATION_ID, AUTH, BASIC, FakeApi, activation_record, run

NS = "/api/v1/namespaces"
QUEUE_FEED = f"{NS}/whisk.system/actions/rabbitmq/queue"


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    props = tmp_path / "wskprops"
    monkeypatch.setenv("WSK_CONFIG_FILE", str(props))
    fake = FakeApi()
    thread = threading.Thread(target=fake.server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    props.write_text(f"APIHOST={fake.url}\nAUTH={AUTH}\n")
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    thread.join()


def trigger_doc(name: str, **fields: Any) -> dict[str, Any]:
    doc = {"namespace": "guest", "name": name, "version": "0.0.1", "publish": False,
           "parameters": [], "limits": {}, "annotations": [], "updated": 1_718_000_000_000}
    doc.update(fields)
    return doc


def rule_doc(name: str, status: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "namespace": "guest", "name": name, "version": "0.0.1", "publish": False,
        "annotations": [], "trigger": {"path": "guest", "name": "t"},
        "action": {"path": "guest", "name": "hello"}, "updated": 1_718_000_000_000,
    }
    if status is not None:
        doc["status"] = status
    return doc


def feed_record(result: Any, status: str = "success") -> dict[str, Any]:
    return activation_record(
        name="queue",
        response={"status": status, "success": status == "success", "result": result},
        annotations=[{"key": "path", "value": "whisk.system/rabbitmq/queue"},
                     {"key": "kind", "value": "builtin"}],
    )


FEED_ANNOTATION = {"key": "feed", "value": "/whisk.system/rabbitmq/queue"}


# -- triggers -------------------------------------------------------------------------------


def test_trigger_create_with_feed(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.route("PUT", f"{NS}/_/triggers/orders", trigger_doc("orders"))
    api.route("GET", NS, ["guest"])
    record = feed_record({"status": "success"})
    api.route("POST", QUEUE_FEED, record)
    code, out, err = run(
        capsys, "trigger", "create", "orders", "--feed", "/whisk.system/rabbitmq/queue",
        "-p", "queue", "orders", "-p", "batchSize", "10", "-a", "description", "from orders",
    )
    assert (code, err) == (0, "")
    assert out == (
        f"ok: invoked /whisk.system/rabbitmq/queue with id {ACTIVATION_ID}\n"
        + json.dumps(record, indent=4) + "\nok: created trigger orders\n"
    )
    put, namespaces, invoke = api.requests
    assert (put.method, put.path, put.query) == (
        "PUT", f"{NS}/_/triggers/orders", {"overwrite": "false"}
    )
    # With a feed, -p goes to the feed, not onto the trigger.
    assert put.body == {"namespace": "_", "name": "orders", "annotations": [
        {"key": "description", "value": "from orders"}, FEED_ANNOTATION]}
    assert (namespaces.method, namespaces.path) == ("GET", NS)
    assert (invoke.method, invoke.path) == ("POST", QUEUE_FEED)
    assert invoke.query == {"blocking": "true", "result": "false"}
    assert invoke.body == {"queue": "orders", "batchSize": 10, "lifecycleEvent": "CREATE",
                           "triggerName": "/guest/orders", "authKey": AUTH}
    assert invoke.headers["Authorization"] == BASIC


def test_trigger_create_feed_failure_deletes_the_trigger(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.route("PUT", f"{NS}/_/triggers/orders", trigger_doc("orders"))
    api.route("GET", NS, ["guest"])
    message = "'queue' is required: the name of the RabbitMQ queue to consume"
    api.route("POST", QUEUE_FEED, feed_record({"error": message}, "application error"),
              status=502)
    api.route("DELETE", f"{NS}/_/triggers/orders", trigger_doc("orders"))
    code, out, err = run(capsys, "trigger", "create", "orders", "-f",
                         "/whisk.system/rabbitmq/queue", "-F", "batchSize", "2")
    assert (code, out) == (2, "")
    assert err == (
        "error: Unable to create trigger 'orders': Unable to configure feed "
        f"'/whisk.system/rabbitmq/queue': {message}\n"
    )
    assert [(r.method, r.path) for r in api.requests] == [
        ("PUT", f"{NS}/_/triggers/orders"), ("GET", NS), ("POST", QUEUE_FEED),
        ("DELETE", f"{NS}/_/triggers/orders"),
    ]
    assert api.requests[2].body == {"batchSize": 2, "lifecycleEvent": "CREATE",
                                    "triggerName": "/guest/orders", "authKey": AUTH}


def test_trigger_create_plain_and_flag_mixing(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.route("PUT", f"{NS}/_/triggers/t", trigger_doc("t"))
    code, out, _ = run(capsys, "trigger", "create", "t", "-p", "a", "1", "-p", "b", "x")
    assert (code, out) == (0, "ok: created trigger t\n")
    assert api.last.body == {"namespace": "_", "name": "t", "parameters": [
        {"key": "a", "value": 1}, {"key": "b", "value": "x"}]}
    assert len(api.requests) == 1

    code, _, err = run(capsys, "trigger", "create", "t", "-p", "a", "1", "-T", "b", "2")
    assert (code, err) == (1, "error: Incorrect usage. Cannot combine --feed-param or "
                              "--trigger-param flag with --param flag\n")
    code, _, err = run(capsys, "trigger", "create", "t", "-F", "a", "1")
    assert (code, err) == (
        1, "error: Incorrect usage. trigger without a feed cannot have feed parameters.\n"
    )
    assert len(api.requests) == 1

    api.route("PUT", f"{NS}/_/triggers/t", {"error": "resource already exists", "code": "c1"},
              status=409)
    code, _, err = run(capsys, "trigger", "create", "t")
    assert (code, err) == (2, "error: Unable to create trigger 't': resource already exists "
                              "(code c1)\n")


def test_trigger_fire(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    path = f"{NS}/_/triggers/events"
    api.route("POST", path, {"activationId": ACTIVATION_ID}, status=202,
              headers={"x-openwhisk-activation-id": ACTIVATION_ID})
    code, out, _ = run(capsys, "trigger", "fire", "events", '{"temperature": 60, "unit": "F"}',
                       "-p", "unit", "C")
    assert (code, out) == (0, f"ok: triggered /_/events with id {ACTIVATION_ID}\n")
    assert (api.last.method, api.last.path, api.last.query) == ("POST", path, {})
    assert api.last.body == {"temperature": 60, "unit": "C"}
    assert api.last.headers["Authorization"] == BASIC

    api.route("POST", path, None, status=204)  # no active rule
    code, out, _ = run(capsys, "trigger", "fire", "events")
    assert (code, out) == (0, "ok: triggered /_/events\n")
    assert api.last.body == {}

    code, _, err = run(capsys, "trigger", "fire", "events", "[1]")
    assert (code, err) == (1, "error: Invalid payload '[1]': it must be a JSON object.\n")
    code, _, err = run(capsys, "trigger", "fire", "nope")
    assert (code, err) == (2, "error: Unable to fire trigger 'nope': The requested resource "
                              "does not exist. (code nf0001)\n")


def test_trigger_delete_tells_the_feed_first(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = trigger_doc("orders", annotations=[FEED_ANNOTATION])
    api.route("GET", f"{NS}/_/triggers/orders", doc)
    api.route("GET", NS, ["guest"])
    record = feed_record({"status": "success"})
    api.route("POST", QUEUE_FEED, record)
    api.route("DELETE", f"{NS}/_/triggers/orders", doc)
    code, out, _ = run(capsys, "trigger", "delete", "orders")
    assert code == 0
    assert out == (
        f"ok: invoked /whisk.system/rabbitmq/queue with id {ACTIVATION_ID}\n"
        + json.dumps(record, indent=4) + "\nok: deleted trigger orders\n"
    )
    assert [(r.method, r.path) for r in api.requests] == [
        ("GET", f"{NS}/_/triggers/orders"), ("GET", NS), ("POST", QUEUE_FEED),
        ("DELETE", f"{NS}/_/triggers/orders"),
    ]
    assert api.requests[2].body == {"lifecycleEvent": "DELETE", "triggerName": "/guest/orders",
                                    "authKey": AUTH}

    # A feed that refuses does not keep the trigger alive.
    api.requests.clear()
    api.route("POST", QUEUE_FEED, feed_record({"error": "gone"}, "application error"),
              status=502)
    code, out, err = run(capsys, "trigger", "delete", "orders")
    assert (code, out) == (0, "ok: deleted trigger orders\n")
    assert err == "warning: Unable to configure feed '/whisk.system/rabbitmq/queue': gone\n"
    assert api.last.method == "DELETE"


def test_trigger_update(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    path = f"{NS}/_/triggers/orders"
    api.route("GET", path, trigger_doc("orders", annotations=[FEED_ANNOTATION]))
    api.route("GET", NS, ["guest"])
    record = feed_record({"status": "success"})
    api.route("POST", QUEUE_FEED, record)
    code, out, _ = run(capsys, "trigger", "update", "orders", "-p", "maxRetries", "5")
    assert code == 0
    assert out.endswith("\nok: updated trigger orders\n")
    # Feed parameters only: the feed is reconfigured, the trigger is not rewritten.
    assert [(r.method, r.path) for r in api.requests] == [
        ("GET", path), ("GET", NS), ("POST", QUEUE_FEED)]
    assert api.last.body == {"maxRetries": 5, "lifecycleEvent": "UPDATE",
                             "triggerName": "/guest/orders", "authKey": AUTH}

    # New annotations replace the old ones: the feed annotation is sent along.
    api.requests.clear()
    api.route("PUT", path, trigger_doc("orders"))
    code, out, _ = run(capsys, "trigger", "update", "orders", "-a", "owner", "me")
    assert (code, out) == (0, "ok: updated trigger orders\n")
    put = api.requests[-1]
    assert (put.method, put.query) == ("PUT", {"overwrite": "true"})
    assert put.body == {"namespace": "_", "name": "orders", "annotations": [
        {"key": "owner", "value": "me"}, FEED_ANNOTATION]}

    # A trigger that does not exist is created.
    api.requests.clear()
    api.route("GET", f"{NS}/_/triggers/fresh", {"error": "The requested resource does not "
                                                "exist.", "code": "x"}, status=404)
    api.route("PUT", f"{NS}/_/triggers/fresh", trigger_doc("fresh"))
    code, out, _ = run(capsys, "trigger", "update", "fresh", "-p", "a", "1")
    assert (code, out) == (0, "ok: created trigger fresh\n")
    assert api.last.query == {"overwrite": "false"}
    assert api.last.body["parameters"] == [{"key": "a", "value": 1}]


def test_trigger_get_and_list(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    doc = trigger_doc("events", parameters=[{"key": "type", "value": "webhook"}])
    api.route("GET", f"{NS}/_/triggers/events", doc)
    code, out, _ = run(capsys, "trigger", "get", "events")
    assert (code, out) == (0, "ok: got trigger events\n" + json.dumps(doc, indent=4) + "\n")
    code, out, _ = run(capsys, "trigger", "get", "events", "parameters")
    assert out == ("ok: got trigger events, displaying field parameters\n"
                   + json.dumps(doc["parameters"], indent=4) + "\n")
    code, out, _ = run(capsys, "trigger", "get", "events", "-s")
    assert out == ("trigger /guest/events: Returns a result based on parameter type\n"
                   "   (parameters: *type)\n")
    code, _, err = run(capsys, "trigger", "get", "events", "exec")
    assert (code, err) == (1, "error: Invalid field filter 'exec'.\n")

    api.route("GET", f"{NS}/_/triggers", [trigger_doc("zeta"), trigger_doc("alpha",
                                                                            publish=True)])
    code, out, _ = run(capsys, "trigger", "list", "-n", "-l", "5")
    assert api.last.query == {"limit": "5", "skip": "0"}
    assert out.splitlines() == [
        "triggers", f"{'/guest/alpha':<70} shared", f"{'/guest/zeta':<70} private"]


# -- rules ----------------------------------------------------------------------------------


def test_rule_create_and_update(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.route("PUT", f"{NS}/_/rules/r", rule_doc("r", "active"))
    code, out, _ = run(capsys, "rule", "create", "r", "t", "hello")
    assert (code, out) == (0, "ok: created rule r\n")
    assert api.last.query == {"overwrite": "false"}
    assert api.last.body == {"name": "r", "trigger": "/_/t", "action": "/_/hello"}
    code, out, _ = run(capsys, "rule", "update", "r", "/guest/t", "utils/echo")
    assert (code, out) == (0, "ok: updated rule r\n")
    assert api.last.query == {"overwrite": "true"}
    assert api.last.body == {"name": "r", "trigger": "/guest/t", "action": "/_/utils/echo"}


def test_rule_enable_disable_status(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    path = f"{NS}/_/rules/r"
    api.route("POST", path, None)
    code, out, _ = run(capsys, "rule", "enable", "r")
    assert (code, out) == (0, "ok: enabled rule r\n")
    assert (api.last.method, api.last.path, api.last.body) == ("POST", path, {"status": "active"})
    assert api.last.headers["Authorization"] == BASIC
    code, out, _ = run(capsys, "rule", "disable", "r")
    assert (code, out) == (0, "ok: disabled rule r\n")
    assert api.last.body == {"status": "inactive"}

    api.route("GET", path, rule_doc("r", "inactive"))
    code, out, _ = run(capsys, "rule", "status", "r")
    assert (code, out) == (0, "ok: rule r is inactive\n")

    api.route("POST", path, {"error": "Only rules with existing triggers can be activated",
                             "code": "c2"}, status=404)
    code, _, err = run(capsys, "rule", "enable", "r")
    assert (code, err) == (2, "error: Unable to enable rule 'r': Only rules with existing "
                              "triggers can be activated (code c2)\n")


def test_rule_get_delete_list(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.route("GET", f"{NS}/_/rules/r", rule_doc("r", "active"))
    api.route("GET", f"{NS}/_/rules/q", rule_doc("q", "inactive"))
    code, out, _ = run(capsys, "rule", "get", "r", "action")
    assert out == ('ok: got rule r, displaying field action\n'
                   '{\n    "path": "guest",\n    "name": "hello"\n}\n')

    api.route("POST", f"{NS}/_/rules/r", None)
    api.route("DELETE", f"{NS}/_/rules/r", rule_doc("r", "inactive"))
    api.requests.clear()
    code, out, _ = run(capsys, "rule", "delete", "r", "--disable")
    assert (code, out) == (0, "ok: deleted rule r\n")
    assert [(r.method, r.body) for r in api.requests] == [
        ("POST", {"status": "inactive"}), ("DELETE", None)]

    # Listed rules carry no status: each is fetched for it, as wsk does.
    api.route("GET", f"{NS}/_/rules", [rule_doc("r"), rule_doc("q")])
    api.requests.clear()
    code, out, _ = run(capsys, "rule", "list")
    assert code == 0
    assert out.splitlines() == [
        "rules", f"{'/guest/r':<70} {'private':<20} active",
        f"{'/guest/q':<70} {'private':<20} inactive",
    ]
    assert [r.path for r in api.requests] == [
        f"{NS}/_/rules", f"{NS}/_/rules/r", f"{NS}/_/rules/q"]
    assert api.requests[0].query == {"limit": "30", "skip": "0"}
