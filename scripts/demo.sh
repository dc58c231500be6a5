#!/usr/bin/env bash
# Starts the whole platform on this machine and runs a demo function: installs what is
# missing, starts RabbitMQ, Redis and the Docker engine, builds the runtime images, runs
# gateway + initializer + invoker, deploys `hello` and invokes it. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/ft up --demo
