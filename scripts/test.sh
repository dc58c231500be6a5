#!/usr/bin/env bash
# The test command: installs and starts everything the suite needs (RabbitMQ, Redis, the
# Docker engine, the runtime images, the Python package), lints, then runs the whole suite
# against the real services. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ft services up
.venv/bin/ft runtimes build
.venv/bin/ruff check .
.venv/bin/pytest -q -p no:cacheprovider "$@"
# The benchmark in smoke mode: every section runs and lands in the JSON (no timing is judged).
.venv/bin/python -m bench --smoke
