#!/usr/bin/env bash
# A multi-host Funtainer on this machine's test hosts (network namespaces): three RabbitMQ
# nodes with quorum queues, Redis with a replica, gateway and initializer on h1, an invoker on
# each further host. `up` returns once it answers; `down` stops it and removes the hosts.
#   bash scripts/cluster-hosts.sh up [--invokers N]      bash scripts/cluster-hosts.sh down
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/ft ] || bash scripts/install.sh
exec .venv/bin/ft hosts "$@"
