#!/usr/bin/env bash
# CI for the Python client (called by .ci/run): make the venv if needed (idempotent, a
# no-op when pyproject.toml and the example's requirements are unchanged), then lint,
# type-check, run the tests against a real kyu ($KYU_BIN) and the seed 004 example.
set -euo pipefail
cd "$(dirname "$0")"
EXAMPLE=../../examples/python-stocks

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
   || ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
  PY=python3
fi

stamp=$(cat pyproject.toml "$EXAMPLE/requirements.txt" | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.kyu-stamp 2>/dev/null)" != "$stamp" ]; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q -e '.[dev]' -r "$EXAMPLE/requirements.txt"
  echo "$stamp" > .venv/.kyu-stamp
fi

echo "== python client: ruff, mypy"
.venv/bin/ruff check . "$EXAMPLE"
.venv/bin/ruff format --check . "$EXAMPLE"
.venv/bin/mypy --strict src/kyu_client
MYPYPATH=tests .venv/bin/mypy --strict bench.py tests "$EXAMPLE"

echo "== python client: tests against kyu at ${KYU_BIN:-(default)}"
.venv/bin/pytest

echo "== example: python-stocks"
.venv/bin/python "$EXAMPLE/run_demo.py"
