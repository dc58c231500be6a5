"""How a process reads the addresses of a RabbitMQ cluster and of Redis Sentinels, and when
record writes wait for replicas."""

from __future__ import annotations

import pytest

from bus.rabbit_nodes import node_urls
from bus.redis_nodes import ReplicaAcks, parse_sentinel_url


def test_amqp_url_names_one_node_or_several_in_order() -> None:
    assert node_urls("amqp://u:p@a:5672/") == ["amqp://u:p@a:5672/"]
    assert node_urls("amqp://u:p@a/, amqp://u:p@b/,amqp://u:p@c/") == [
        "amqp://u:p@a/", "amqp://u:p@b/", "amqp://u:p@c/"]
    with pytest.raises(ValueError):
        node_urls(" , ")


def test_sentinel_url_names_sentinels_service_database_and_password() -> None:
    assert parse_sentinel_url("redis+sentinel://10.0.0.1:26380,10.0.0.2,h3:1/funtainer/2") == (
        [("10.0.0.1", 26380), ("10.0.0.2", 26379), ("h3", 1)], "funtainer", 2, None)
    assert parse_sentinel_url("redis+sentinel://:s%40cret@s1/main") == (
        [("s1", 26379)], "main", 0, "s@cret")


@pytest.mark.parametrize("url", ["redis+sentinel://s1:26379", "redis+sentinel:///svc",
                                 "redis+sentinel://s1/svc/0/extra"])
def test_sentinel_url_without_sentinels_or_service_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_sentinel_url(url)


def test_writes_stop_waiting_for_missing_replicas_for_a_while(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr("bus.redis_nodes.time.monotonic", lambda: clock[0])
    assert not ReplicaAcks(0, 500).should_wait()
    acks = ReplicaAcks(1, 500)
    assert acks.should_wait()
    acks.acked(1)
    assert acks.should_wait()
    acks.acked(0)  # the replica is gone: waiting would cost every write its whole timeout
    assert not acks.should_wait()
    clock[0] += ReplicaAcks.RETRY_AFTER_S
    assert acks.should_wait()
