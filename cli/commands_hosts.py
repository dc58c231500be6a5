"""``ft hosts up|down``: a multi-host Funtainer on this machine's test hosts (network
namespaces, cli/hosts.py) for a person to try: three RabbitMQ nodes with quorum queues, Redis
with a replica, gateway and initializer on h1, an invoker on each further host. ``up`` returns
once it all answers and leaves it running; ``down`` stops it and removes the hosts (also what
an earlier, interrupted run left)."""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from bus.config import get_settings
from cli.errors import EXIT_OK
from cli.host_cluster import HostCluster
from cli.hosts import HostNetwork, HostsError
from cli.services import ServiceError

EXIT_FAILED = 1


def hosts_up(args: argparse.Namespace) -> int:
    settings = get_settings()
    tag = args.tag or secrets.token_hex(2)
    base = Path(settings.work_dir) / "hosts" / tag
    cluster = HostCluster.for_invokers(tag, args.invokers, base, subnet=args.subnet,
                                       user_memory_mb=args.memory)
    print(f".. building {cluster.network.count} hosts and starting the cluster (logs in "
          f"{base / 'logs'}, RabbitMQ's in {base / 'rabbitmq'})", flush=True)
    try:
        cluster.start(args.invokers)
    except (HostsError, ServiceError, OSError) as exc:
        print(f"error: {exc}\n{cluster.processes.logs(1500)}", file=sys.stderr)
        return EXIT_FAILED
    auth = f"{settings.guest_uuid}:{settings.guest_key}"
    print(f"ok: Funtainer on {cluster.network.count} hosts\n{cluster.describe()}\n"
          f"try:  ft property set --apihost {cluster.api_host} --auth {auth}\n"
          f"stop: ft hosts down --tag {tag}")
    return EXIT_OK


def hosts_down(args: argparse.Namespace) -> int:
    found = [n for n in HostNetwork.leftovers() if args.tag in (None, n.tag)]
    for network in found:
        print(f".. stopping {len(network.pids)} processes and removing the hosts of "
              f"{network.tag}", flush=True)
        network.down()
    print(f"ok: {len(found)} host network(s) removed")
    return EXIT_OK


def add_hosts_commands(subparsers: argparse._SubParsersAction) -> None:
    hosts = subparsers.add_parser("hosts", help="a multi-host cluster on test hosts")
    commands = hosts.add_subparsers(title="commands", metavar="COMMAND")
    up = commands.add_parser("up", help="build the hosts and start the cluster on them")
    up.add_argument("--invokers", type=int, default=2, metavar="N",
                    help="invokers, one per host (default 2)")
    up.add_argument("--memory", type=int, default=1024, metavar="MB",
                    help="each invoker's container memory (default 1024)")
    up.add_argument("--tag", help="a name of up to 8 letters (default: random)")
    up.add_argument("--subnet", type=int, default=0, metavar="K",
                    help="use 10.213.K.0/24 (default 0)")
    up.set_defaults(handler=hosts_up)
    down = commands.add_parser("down", help="stop the cluster and remove its hosts")
    down.add_argument("--tag", help="only this one (default: every one left)")
    down.set_defaults(handler=hosts_down)
    hosts.set_defaults(handler=lambda args: (hosts.print_help(), EXIT_OK)[1])
