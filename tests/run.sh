#!/usr/bin/env bash
# Sets up what the tests need (never a torch other than 2.13.0) and runs them.
# The real-ComfyUI suite runs too when COMFYUI_PATH points at a ComfyUI checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
"$PY" -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
if command -v node >/dev/null 2>&1 && [ -d web/tests ]; then
  node --test web/tests/
fi
"$PY" -m pytest -q "$@"
