#!/usr/bin/env bash
# Installs the official `openai` Node SDK (tests/node/package.json) from npm for the Node SDK tests.
# Usage: scripts/node-env.sh [DIR]   (default: ${LLMSERVE_CACHE_DIR:-~/.cache/llmserve}/node-env)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-${LLMSERVE_CACHE_DIR:-$HOME/.cache/llmserve}/node-env}"
command -v node >/dev/null && command -v npm >/dev/null || {
  echo "node-env: node and npm are needed (Debian: apt-get install nodejs npm)" >&2
  exit 1
}
if [ -d "$dir/node_modules/openai" ] && cmp -s "$here/tests/node/package.json" "$dir/package.json"; then
  exit 0
fi
mkdir -p "$dir"
cp "$here/tests/node/package.json" "$dir/package.json"
rm -rf "$dir/node_modules" "$dir/package-lock.json"
(cd "$dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
echo "node test environment ready: $dir"
