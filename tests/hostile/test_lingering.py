"""Work that outlives its activation: a background thread and a detached child process that
keep printing and writing after the action returned."""

from __future__ import annotations

import asyncio
import secrets

from tests.hostile.harness import (
    SETTLE_S,
    Engine,
    NeighbourLoad,
    Tenant,
    Watch,
    result_of,
    succeeded,
    under_attack,
    unique,
)

LINGER = r'''
import os, threading, time

def chatter(tag, path):
    while True:
        print(f"{tag} still here", flush=True)
        with open(path, "a") as f:
            f.write(tag + "\n")
        time.sleep(0.02)

def main(args):
    host = os.uname().nodename
    if args.get("exit"):
        os._exit(3)
    if "nonce" in args:
        # A plain fork whose child returns from main like the parent: only the parent's
        # answer may ever reach the invoker.
        if os.fork() == 0:
            return {"who": "child", "nonce": args["nonce"]}
        return {"who": "parent", "nonce": args["nonce"]}
    if "marker" in args:
        marker = args["marker"]
        # The process first: a fork while the thread holds stdout's lock would leave the
        # child's copy of that lock held forever.
        if os.fork() == 0:  # a detached grandchild, in a session of its own, adopted by init
            os.setsid()
            if os.fork() == 0:
                chatter(f"{marker}-child", f"/tmp/{marker}-child")
            os._exit(0)
        os.wait()
        tag = f"{marker}-thread"
        threading.Thread(target=chatter, args=(tag, f"/tmp/{tag}"), daemon=True).start()
        return {"host": host}
    time.sleep(args.get("sleep", 0))
    return {"host": host, "tmp": sorted(os.listdir("/tmp"))}
'''

LOOK = r'''
import os

def main(args):
    return {"host": os.uname().nodename, "tmp": sorted(os.listdir("/tmp"))}
'''


async def test_work_left_running_reaches_no_other_activation(
    attacker: Tenant, neighbour: NeighbourLoad, engine: Engine
) -> None:
    """A warm container is reused only for the same action (and version) invoked by the same
    namespace, so what an activation leaves running can only meet later activations of that
    same action: never another action, never another tenant. Those later activations of the
    same action do see it, as in OpenWhisk (documented here, asserted below):

    - lines the leftover thread and process print, between and during activations, land in
      the logs of the next activation of that action in that container;
    - files they write in /tmp are there for it to see;
    - they keep running, within the container's cgroup limits (CPU cap, memory, pids), until
      the container is removed: by a developer error (asserted below: removal kills them),
      eviction or the idle timeout. Idle containers are not paused yet (OpenWhisk pauses
      them), so an idle warm container's leftovers still use CPU, up to its cap.

    What may not leak even within the action: a forked copy of the action returning from
    ``main`` must not answer the invoker in place of the proxy (the proxy ends such copies)."""
    name, bystander = unique("linger"), unique("bystander")
    await attacker.create(name, LINGER)
    await attacker.create(bystander, LOOK)

    async def linger(watch: Watch) -> None:
        marker = f"linger-{secrets.token_hex(4)}"
        record = await attacker.invoke(name, {"marker": marker})
        assert succeeded(record), record["response"]
        host = result_of(record)["host"]

        # Documented, not contained: the same action's next activation in that container
        # (soon: later, the pool could have evicted the container for room).
        await asyncio.sleep(SETTLE_S)
        again = await attacker.invoke(name, {"sleep": 0.3})
        if result_of(again)["host"] == host:
            assert {f"{marker}-thread", f"{marker}-child"} <= set(result_of(again)["tmp"])
            for source in ("thread", "child"):
                assert any(f"{marker}-{source} still here" in line for line in again["logs"])
        else:
            print("lingering: the same action's next activation was not warm; not checked")

        for _ in range(3):
            other = await attacker.invoke(bystander)
            seen = result_of(other)
            watch.held(seen["host"] != host, "another action ran in the container")
            watch.held(not any(marker in f for f in seen["tmp"]), "another action sees /tmp")
            watch.held(not any(marker in line for line in other["logs"]),
                       "another action's logs carry the leftover output")
        async with neighbour.tenant() as tenant:
            theirs = await tenant.invoke(neighbour.action)
        watch.held(result_of(theirs)["host"] != host, "the other tenant ran in the container")
        watch.held(not any(marker in line for line in theirs["logs"]),
                   "the other tenant's logs carry the leftover output")
        watch.held(host not in neighbour.hosts(since=watch.started),
                   "the other tenant's load ran in the container")

        # The leftovers keep running while the action's forked copies try to answer (in the
        # same container, hence the pause before each).
        for _ in range(2):
            await asyncio.sleep(SETTLE_S)
            nonce = secrets.token_hex(4)
            answer = await attacker.invoke(name, {"nonce": nonce})
            watch.held(result_of(answer) == {"who": "parent", "nonce": nonce},
                       f"answered by {result_of(answer)}")
        hosts.append(host)

    async def remove(watch: Watch) -> None:
        # Each crash removes the container it ran in; the action may have more than one
        # (an invoke that found its container not yet released started another).
        for _ in range(8):
            await asyncio.sleep(SETTLE_S)
            crash = await attacker.invoke(name, {"exit": True})
            watch.held(crash["response"]["status"] == "action developer error", "no crash")
            if await engine.wait_gone(hosts[-1], timeout=5):
                break
        watch.held(not await asyncio.to_thread(engine.exists, hosts[-1]),
                   "the container (and its leftovers) was kept")

    hosts: list[str] = []
    await under_attack(neighbour, "lingering", linger, aftermath=remove)
