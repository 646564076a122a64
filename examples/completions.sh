#!/usr/bin/env bash
# Text completions from llmserve with curl: one plain request, then the same streamed as server-sent events.
# Run (with the server started by `scripts/serve.sh`): bash examples/completions.sh
# Set BASE to reach another server (default http://127.0.0.1:8080).
set -euo pipefail
BASE="${BASE:-http://127.0.0.1:8080}"

curl -sS "$BASE/v1/completions" -H 'Content-Type: application/json' \
  -d '{"model": "SmolLM2-135M-Instruct", "prompt": "The three primary colors are", "max_tokens": 24, "temperature": 0}'
echo

curl -sS -N "$BASE/v1/completions" -H 'Content-Type: application/json' \
  -d '{"model": "SmolLM2-135M-Instruct", "prompt": "The three primary colors are", "max_tokens": 24, "temperature": 0, "stream": true}'
