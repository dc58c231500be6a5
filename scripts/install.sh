#!/usr/bin/env bash
# Installs what Funtainer needs on a fresh Debian/Ubuntu machine: the system packages
# (Docker engine, RabbitMQ, Redis, debootstrap for the offline runtime images, bubblewrap for
# the sandbox backend, Chromium for the dashboard's test, Node.js for the npm client
# compatibility tests) and the Python
# package, editable, in .venv. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export PATH="$PATH:/usr/sbin:/sbin"

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v rabbitmq-server >/dev/null || need+=(rabbitmq-server)
command -v redis-server >/dev/null || need+=(redis-server)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v docker-compose >/dev/null || need+=(docker-compose)
# The sandbox backend: bubblewrap for the namespaces, libseccomp for its filter.
command -v bwrap >/dev/null || need+=(bubblewrap)
[ -e /usr/lib/x86_64-linux-gnu/libseccomp.so.2 ] || ldconfig -p | grep -q libseccomp.so.2 \
  || need+=(libseccomp2)
# The dashboard's test drives Debian's Chromium headless (through Playwright, never a
# downloaded browser build).
command -v chromium >/dev/null || need+=(chromium)
# The OpenWhisk npm client compatibility suite runs under the host's Node.js.
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v python3 >/dev/null || need+=(python3)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo ".. installing ${need[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
echo "ok: installed (Python package in .venv)"
