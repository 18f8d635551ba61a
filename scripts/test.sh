#!/usr/bin/env bash
# Runs every check: the import contracts (lint-imports, pyproject.toml), ruff, then pytest (unit,
# integration, hypothesis) including the lit + FileCheck tests (tests/test_lit.py runs them).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run 'bash scripts/setup.sh' first" >&2; exit 2; }
export NUMBA_THREADING_LAYER=workqueue
.venv/bin/lint-imports
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
