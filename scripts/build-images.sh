#!/usr/bin/env bash
# The images compose.yaml and deploy/compose/*.yaml run, built on this machine with no registry:
#   funtainer/platform:latest   the platform (`ft gateway|initializer|invoker|burst`)
#   funtainer/services:bookworm RabbitMQ, Redis and Redis Sentinel from Debian's apt
# Both start from funtainer/base:bookworm, the debootstrap root `ft runtimes build` makes (the
# runtime images the invokers start come from there too).
set -euo pipefail
cd "$(dirname "$0")/.."
ft=.venv/bin/ft
[ -x "$ft" ] || { echo "run scripts/install.sh first" >&2; exit 1; }
"$ft" runtimes build
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
echo ".. wheels of the platform and its dependencies"
# Apart: the dependencies' wheels are the same bytes every time, so the image layer that
# installs them stays cached and a rebuild only reinstalls the platform's own wheel.
.venv/bin/pip wheel -q . -w "$context/wheels"
mkdir "$context/platform"
mv "$context"/wheels/funtainer-*.whl "$context/platform/"
# pip itself (the image has none), and what Debian's Python 3.11.2 needs beyond this
# machine's (redis-py wants async-timeout before 3.11.3).
.venv/bin/pip download -q pip async-timeout --no-deps -d "$context/wheels"
echo ".. funtainer/platform:latest"
docker build -q -t funtainer/platform:latest -f deploy/images/platform.Dockerfile "$context"
echo ".. funtainer/services:bookworm"
# apt inside the build needs the machine's network (the engine's default bridge is off here).
docker build -q --network host -t funtainer/services:bookworm \
  -f deploy/images/services.Dockerfile "$context"
echo "ok: funtainer/platform:latest and funtainer/services:bookworm"
