#!/usr/bin/env bash
# Creates the Python virtual environment the tests drive llmserve with (the official openai SDK, pytest).
# Usage: scripts/python-env.sh [VENV_DIR]   (default: ${LLMSERVE_CACHE_DIR:-~/.cache/llmserve}/test-venv)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${LLMSERVE_CACHE_DIR:-$HOME/.cache/llmserve}/test-venv}"
stamp="$venv/.requirements"
if [ -x "$venv/bin/python" ] && cmp -s "$here/tests/python/requirements.txt" "$stamp"; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/tests/python/requirements.txt"
cp "$here/tests/python/requirements.txt" "$stamp"
echo "python test environment ready: $venv"
