#!/usr/bin/env bash
# CI for the Go client: installs Go from Debian if missing, then gofmt + go vet, the tests
# (against a real kyu serve: $KYU_BIN, else the repository's cargo build, target/debug/kyu or
# $CARGO_TARGET_DIR/debug/kyu when CARGO_TARGET_DIR is set) and the
# examples/go-delay-print programs against a kyu started here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if ! command -v go >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang >/dev/null
fi
go version
export GOPROXY=off # standard library only: nothing to download

if [ -z "${KYU_BIN:-}" ]; then
  target="${CARGO_TARGET_DIR:-target}"
  case "$target" in /*) ;; *) target="$root/$target" ;; esac
  KYU_BIN="$target/debug/kyu"
fi
export KYU_BIN
[ -x "$KYU_BIN" ] || { echo "no kyu binary at $KYU_BIN (cargo build first)" >&2; exit 1; }

for dir in "$here" "$root/examples/go-delay-print"; do
  (cd "$dir"
   unformatted="$(gofmt -l .)"
   [ -z "$unformatted" ] || { echo "gofmt needed: $unformatted" >&2; exit 1; }
   go vet ./...)
done

(cd "$here" && go test -count=1 -timeout 120s ./...)

# The examples, against a kyu that declares the example worker's remote type.
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)))"
(cd "$work" && exec env -u DATABASE_URL -u KYU_DATABASE_URL -u KYU_CONFIG -u KYU_API_TOKENS \
   "$KYU_BIN" serve --bind "127.0.0.1:$port" --config "$root/examples/go-delay-print/kyu.toml" >"$work/kyu.log" 2>&1) &
kyu_pid=$!
trap 'kill "$kyu_pid" 2>/dev/null; wait "$kyu_pid" 2>/dev/null; rm -rf "$work"' EXIT
export KYU_URL="http://127.0.0.1:$port"
for _ in $(seq 300); do
  curl -fs "$KYU_URL/readyz" >/dev/null 2>&1 && break
  kill -0 "$kyu_pid" 2>/dev/null || { cat "$work/kyu.log"; exit 1; }
  sleep 0.1
done
cd "$root/examples/go-delay-print"
timeout 60 go run . -message "hello from Go (seed 003)" -delay 2s
timeout 60 go run ./worker -demo
echo "Go client: OK"
