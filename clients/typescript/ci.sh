#!/bin/sh
# CI for the TypeScript client: installs what it needs (Node from Debian only if missing,
# npm packages from package-lock.json only when it changed), then lints, tests against a
# real kyu (KYU_BIN, else the repository's cargo build: target/debug/kyu, or
# $CARGO_TARGET_DIR/debug/kyu when CARGO_TARGET_DIR is set) and runs the seed-002 example.
set -eu
cd "$(dirname "$0")"
EXAMPLE=../../examples/typescript-chatwork

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq nodejs npm
fi

# npm ci, skipped when node_modules was installed from this very lock file.
npm_ci() {
  if ! cmp -s "$1/package-lock.json" "$1/node_modules/.ci-lock" 2>/dev/null; then
    (cd "$1" && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.ci-lock)
  fi
}

npm_ci .
npm run --silent build
# `npm run lint` is eslint + `tsc --noEmit -p tsconfig.test.json`; `npm test` compiles that
# same strict project before it runs (and fails on a type error), so eslint alone here.
npx --no-install eslint .
npm test

npm_ci "$EXAMPLE"
(cd "$EXAMPLE" && npm run --silent start)
