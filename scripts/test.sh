#!/usr/bin/env bash
# Runs the whole test suite: unit, Postgres (embedded) and real-Asterisk tests.
# The Asterisk sandbox is built on first use (cached in /var/cache/hitcall) and
# needs root. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
