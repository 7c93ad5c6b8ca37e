#!/usr/bin/env bash
# Runs the HitCall demo on the local Asterisk sandbox and the embedded Postgres.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/hitcall demo "$@"
