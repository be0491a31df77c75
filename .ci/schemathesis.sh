#!/usr/bin/env bash
# Generated-input run against kyu's own OpenAPI document: schemathesis (from PyPI) sends
# requests built from the schema, valid and not, as an admin, and fails on any 5xx, any
# answer that breaks the documented schema, status codes the document does not list, and
# the other checks of `--checks all`. kyu runs on a fresh SQLite file, and on a fresh PostgreSQL and MariaDB database when
# KYU_TEST_POSTGRES_URL / KYU_TEST_MYSQL_URL are set (as .ci/run sets them).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kyu-target}"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/kyu-schemathesis-venv"
version=4.32.5
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$version"
fi

cargo build -q --bin kyu

work=$(mktemp -d)
pid=""
drops=()
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  for d in "${drops[@]}"; do eval "$d" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# A copy: another build in the shared target directory cannot swap it out mid-run.
kyu="$work/kyu"
cp "$CARGO_TARGET_DIR/debug/kyu" "$kyu"

tokens=$("$kyu" token schemathesis --role admin)
token=$(sed -n 's/^token[^:]*: *//p' <<<"$tokens")
entry=$(sed -n 's/^KYU_API_TOKENS entry[^:]*: *//p' <<<"$tokens")
[ -n "$token" ] && [ -n "$entry" ] || { echo "schemathesis: could not make a token" >&2; exit 1; }

# run_against NAME DATABASE_URL: one kyu on that database, one schemathesis run.
run_against() {
  local name=$1 url=$2 log="$work/kyu-$1.log" addr="" status=0
  NO_COLOR=1 KYU_API_TOKENS="$entry" DATABASE_URL="$url" \
    "$kyu" serve --bind 127.0.0.1:0 >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    addr=$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$log" | head -1)
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$addr" ]; then
    echo "schemathesis: kyu did not start on $name" >&2; cat "$log" >&2; return 1
  fi
  echo "schemathesis: kyu on $name at $addr"
  PYTHONPATH=.ci SCHEMATHESIS_HOOKS=schemathesis_hooks \
    "$venv/bin/schemathesis" --config-file .ci/schemathesis.toml run "http://$addr/api/v1/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks all \
    --max-examples "${KYU_SCHEMATHESIS_EXAMPLES:-40}" \
    --seed "${KYU_SCHEMATHESIS_SEED:-1}" \
    --no-color || status=$?
  if [ "$status" != 0 ]; then
    echo "--- kyu log on $name (tail)" >&2
    tail -50 "$log" >&2
  fi
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""
  return "$status"
}

db="kyu_schemathesis_$$"
failed=0
run_against sqlite "sqlite://$work/kyu.db" || failed=1
if [ -n "${KYU_TEST_POSTGRES_URL:-}" ]; then
  psql "$KYU_TEST_POSTGRES_URL" -qc "CREATE DATABASE $db"
  drops+=("psql '$KYU_TEST_POSTGRES_URL' -qc 'DROP DATABASE IF EXISTS $db WITH (FORCE)'")
  run_against postgres "${KYU_TEST_POSTGRES_URL%/*}/$db" || failed=1
fi
if [ -n "${KYU_TEST_MYSQL_URL:-}" ]; then
  my=${KYU_TEST_MYSQL_URL#mysql://}; my_auth=${my%%@*}; my_host=${my#*@}; my_host=${my_host%%/*}
  my_args=(-h "${my_host%%:*}" -P "${my_host##*:}" -u "${my_auth%%:*}")
  [ "$my_auth" != "${my_auth#*:}" ] && my_args+=(-p"${my_auth#*:}")
  mysql "${my_args[@]}" -e "CREATE DATABASE $db"
  drops+=("mysql ${my_args[*]} -e 'DROP DATABASE IF EXISTS $db'")
  run_against mysql "${KYU_TEST_MYSQL_URL%/*}/$db" || failed=1
fi
exit "$failed"
