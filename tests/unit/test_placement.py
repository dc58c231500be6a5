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
