#!/usr/bin/env bash
# Static checks, in the order CI runs them: ruff lint, ruff formatting, mypy (config in pyproject.toml).
# Runs every step even after a failure, names each failed step and exits non-zero if any failed.
# Needs .venv with the test extras (bash scripts/bootstrap.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
paths=(hitcall_pbx tests benchmarks)
failed=()

step() {
    local name=$1
    shift
    echo "lint: $name"
    if ! "$@"; then
        echo "lint: $name FAILED" >&2
        failed+=("$name")
    fi
}

step "ruff check" .venv/bin/ruff check "${paths[@]}"
step "ruff format --check" .venv/bin/ruff format --check "${paths[@]}"
step "mypy" .venv/bin/mypy

if [ "${#failed[@]}" -gt 0 ]; then
    echo "lint: failed: ${failed[*]}" >&2
    exit 1
fi
echo "lint: ok"
