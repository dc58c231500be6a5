"""Placement: warm affinity first, then a stable home invoker, then the least loaded."""

from __future__ import annotations

from initializer.placement import InvokerView, choose_invoker


def _inv(i: str, inflight: int = 0, warm: tuple[str, ...] = (), mem: int = 1024) -> InvokerView:
    return InvokerView(id=i, user_memory=mem, inflight_memory=inflight, warm=frozenset(warm))


def test_no_invokers_means_no_placement() -> None:
    assert choose_invoker([], "a", 256) is None


def test_warm_container_wins_over_home() -> None:
    invokers = [_inv("i0"), _inv("i1"), _inv("i2")]
    home = choose_invoker(invokers, "ns/a@1#x", 256)
    other = next(i.id for i in invokers if i.id != home)
    with_warm = [_inv(i.id, warm=("ns/a@1#x",) if i.id == other else ()) for i in invokers]
    assert choose_invoker(with_warm, "ns/a@1#x", 256) == other


def test_warm_invoker_without_room_is_skipped() -> None:
    invokers = [_inv("i0", inflight=1024, warm=("k",)), _inv("i1")]
    assert choose_invoker(invokers, "k", 256) == "i1"


def test_same_action_keeps_its_home_and_actions_spread() -> None:
    invokers = [_inv(f"i{n}") for n in range(4)]
    homes = {choose_invoker(invokers, f"ns/action{n}@0.0.1#d", 256) for n in range(40)}
    assert homes == {"i0", "i1", "i2", "i3"}
    assert len({choose_invoker(invokers, "ns/same@1#d", 256) for _ in range(5)}) == 1


def test_full_home_moves_on_to_one_with_room() -> None:
    invokers = [_inv("i0"), _inv("i1")]
    home = choose_invoker(invokers, "k", 256)
    loaded = [_inv(i.id, inflight=1024 if i.id == home else 0) for i in invokers]
    assert choose_invoker(loaded, "k", 256) not in (home, None)


def test_everyone_full_goes_to_the_least_loaded() -> None:
    invokers = [_inv("i0", inflight=2048), _inv("i1", inflight=1280)]
    assert choose_invoker(invokers, "k", 256) == "i1"


def test_last_placement_wins_over_home_until_a_heartbeat_lists_the_container() -> None:
    invokers = [_inv("i0"), _inv("i1"), _inv("i2")]
    home = choose_invoker(invokers, "k", 256)
    elsewhere = next(i.id for i in invokers if i.id != home)
    assert choose_invoker(invokers, "k", 256, last_placed=elsewhere) == elsewhere


def test_last_placement_without_room_or_gone_falls_back_to_home() -> None:
    invokers = [_inv("i0"), _inv("i1")]
    home = choose_invoker(invokers, "k", 256)
    other = next(i.id for i in invokers if i.id != home)
    full = [_inv(i.id, inflight=1024 if i.id == other else 0) for i in invokers]
    assert choose_invoker(full, "k", 256, last_placed=other) == home
    assert choose_invoker(invokers, "k", 256, last_placed="gone") == home


def _pool(i: str, inflight: int = 0, namespaces: tuple[str, ...] | None = None) -> InvokerView:
    return InvokerView(id=i, user_memory=1024, inflight_memory=inflight, warm=frozenset(),
                       remote=True,
                       namespaces=None if namespaces is None else frozenset(namespaces))


def test_remote_pool_gets_work_only_when_every_local_invoker_is_full() -> None:
    local = [_inv("i0", inflight=512), _inv("i1", inflight=1024)]
    assert choose_invoker([*local, _pool("r")], "k", 256, may_leave=True) == "i0"
    full = [_inv("i0", inflight=1024), _inv("i1", inflight=1024)]
    assert choose_invoker([*full, _pool("r")], "k", 256, may_leave=True) == "r"
    # The least loaded of several pools with room.
    pools = [_pool("r1", inflight=768), _pool("r2", inflight=256)]
    assert choose_invoker([*full, *pools], "k", 256, may_leave=True) == "r2"


def test_work_that_may_not_leave_waits_on_a_local_invoker() -> None:
    full = [_inv("i0", inflight=1024), _inv("i1", inflight=2048, mem=2048)]
    assert choose_invoker([*full, _pool("r")], "k", 256, may_leave=False) in {"i0", "i1"}
    # A pool that does not take this namespace is no pool for it.
    only_ops = _pool("r", namespaces=("ops",))
    assert choose_invoker([*full, only_ops], "k", 256, namespace="guest",
                          may_leave=True) != "r"
    assert choose_invoker([*full, only_ops], "k", 256, namespace="ops", may_leave=True) == "r"
    assert choose_invoker([_pool("r")], "k", 256, may_leave=False) is None


def test_full_remote_pools_buffer_on_the_least_loaded_local_invoker() -> None:
    full = [_inv("i0", inflight=1024), _inv("i1", inflight=1536, mem=2048)]
    assert choose_invoker([*full, _pool("r", inflight=1024)], "k", 256, may_leave=True) == "i1"
    assert choose_invoker([_pool("r", inflight=1024)], "k", 256, may_leave=True) == "r"
