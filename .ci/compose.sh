#!/usr/bin/env bash
# compose.yaml checked without a container engine (CI runs no Docker, nor the `docker
# compose` plugin): Debian's docker-compose (1.29, the Python one) parses it, resolves anchors and
# ${…} interpolation and validates it against the Compose Specification schema it ships
# (`config`); .ci/compose_check.py then checks the resolved topology against the
# repository's files; promtool checks the Prometheus config it mounts. Images are not
# pulled or built and nothing is started.
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs docker-compose and python3-yaml (Debian packages) if missing.
missing=()
command -v docker-compose >/dev/null || missing+=(docker-compose)
/usr/bin/python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Without the optional variables (their defaults apply), and with every one set.
env -u KYU_API_TOKENS docker-compose -f compose.yaml config -q
resolved=$(KYU_API_TOKENS='ops:admin:0000' POSTGRES_PASSWORD=secret docker-compose -f compose.yaml config)
/usr/bin/python3 .ci/compose_check.py <<<"$resolved"
if command -v promtool >/dev/null; then
  promtool check config config/compose/prometheus.yml >/dev/null
  echo "compose: promtool accepts config/compose/prometheus.yml and its rules"
fi
