#!/usr/bin/env bash
# The whole test suite from a fresh clone: venv, install, services, lint, types, tests.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[all,dev]'

scripts/services.sh
# docker-compose.yml is validated by `docker-compose config` (tests/deploy); no Docker
# engine runs here, Debian's docker-compose v1 only parses and interpolates the file.
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "installing docker-compose to validate docker-compose.yml" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose; } >/dev/null 2>&1 \
    || echo "could not install docker-compose; tests/deploy will fail in CI" >&2
fi

echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== import contracts"; .venv/bin/lint-imports --no-cache
echo "== pytest"; .venv/bin/pytest "$@"
