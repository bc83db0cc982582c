#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/install-tools.sh), then lint, types, tests.
# Extra arguments go to pytest, e.g.  scripts/test.sh tests/unit -k reference
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

scripts/install-tools.sh
echo "== ruff" >&2
.venv/bin/ruff check webhook tests bench scripts
.venv/bin/ruff format --check --quiet webhook tests bench scripts
echo "== mypy --strict webhook bench" >&2
.venv/bin/mypy webhook bench
echo "== pytest" >&2
exec .venv/bin/python -m pytest "$@"
