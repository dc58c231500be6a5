"""Conductor actions (OpenWhisk's ``conductor`` annotation) on the real platform, through the
Python client: the continuation protocol, the primary record, and what reaches the conductor
when a step goes wrong. The initializer runs them whatever the backend: Docker cluster only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from funtainer import ActivationFailed, Client
from tests.cluster_fixtures import Cluster

TRIPLE = "def main(a):\n    return {'value': a['value'] * 3}\n"
INCREMENT = "def main(a):\n    return {'value': a['value'] + 1}\n"
FAILS = "def main(a):\n    return {'error': 'component failed'}\n"
# docs/conductors.md's tripleAndIncrement, with the next component's name as a parameter and
# a step that reports what reached it.
CONDUCTOR = '''
def main(params):
    step = params.pop("$step", 0)
    if step == 0:
        then = params.pop("then")
        return {"action": "TRIPLE", "params": params, "state": {"$step": 1, "then": then}}
    if step == 1:
        return {"action": params.pop("then"), "params": params, "state": {"$step": 2}}
    if "error" in params:
        return {"params": {"caught": params["error"]}}
    if params.get("value") == 0:
        return {"error": "the conductor gave up"}
    return {"params": params}
'''


@pytest.fixture
def client(docker_cluster: Cluster) -> Iterator[Client]:
    with Client(docker_cluster.api_host, docker_cluster.auth) as made:
        yield made


@pytest.fixture
def names(client: Client) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:6]
    made = {role: f"cond-{role}-{tag}" for role in ("triple", "increment", "fails", "conductor")}
    client.actions.create(made["triple"], TRIPLE)
    client.actions.create(made["increment"], INCREMENT)
    client.actions.create(made["fails"], FAILS)
    client.actions.create(made["conductor"], CONDUCTOR.replace("TRIPLE", made["triple"]),
                          annotations={"conductor": True})
    yield made
    for name in made.values():
        client.actions.delete(name)


def test_conductor_runs_the_components_it_names(
    client: Client, names: dict[str, str]
) -> None:
    handle = client.actions.invoke_async(names["conductor"],
                                         {"value": 3, "then": names["increment"]})
    assert handle.result(timeout=60) == {"value": 10}
    primary = handle.wait()
    annotations = {a["key"]: a["value"] for a in primary["annotations"]}
    assert annotations["conductor"] is True and annotations["kind"] == "sequence"
    assert annotations["topmost"] is True
    # conductor, triple, conductor, increment, conductor: each caused by the primary.
    derived = [client.activations.get(aid) for aid in primary["logs"]]
    assert [d["name"] for d in derived] == [
        names["conductor"], names["triple"], names["conductor"], names["increment"],
        names["conductor"]]
    assert {d["cause"] for d in derived} == {handle.id}
    assert all({"key": "causedBy", "value": "sequence"} in d["annotations"] for d in derived)
    assert derived[1]["response"]["result"] == {"value": 9}
    assert primary["duration"] == sum(d["duration"] for d in derived)


def test_what_goes_wrong_in_a_step_reaches_the_conductor(
    client: Client, names: dict[str, str]
) -> None:
    conductor = names["conductor"]
    # A component's error result, a missing action and a name that is none: the conductor
    # sees each as {"error": ...} and answers with what it caught.
    assert client.actions.invoke(conductor, {"value": 1, "then": names["fails"]}) == {
        "caught": "component failed"}
    missing = client.actions.invoke(conductor, {"value": 1, "then": "no-such-action"})
    assert missing == {"caught": "Failed to resolve action with name "
                                 "'/guest/no-such-action' during composition."}
    # Another namespace's action is not the caller's to run (whether it exists or not); a
    # public package's is.
    foreign = client.actions.invoke(conductor, {"value": 1, "then": "/someone-else/secret"})
    assert foreign == {"caught": "Failed entitlement check for action with name "
                                 "'/someone-else/secret' during composition."}
    echoed = client.actions.invoke(conductor, {"value": 2, "then": "/whisk.system/utils/echo"})
    assert echoed == {"value": 6}
    invalid = client.actions.invoke(conductor, {"value": 1, "then": 42})
    assert invalid == {"caught": "Failed to parse action name from json value 42 during "
                                 "composition."}
    # The conductor's own error ends the composition with its status.
    with pytest.raises(ActivationFailed) as gave_up:
        client.actions.invoke(conductor, {"value": 0, "then": names["triple"]})
    assert gave_up.value.status == "application error"
    assert gave_up.value.error == "the conductor gave up"
