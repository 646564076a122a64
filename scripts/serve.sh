#!/usr/bin/env bash
# Builds (once) and starts llmserve. With no --model it serves SmolLM2-135M-Instruct, fetched into
# ~/.cache/llmserve on first start. Flags are passed on: scripts/serve.sh --port 9000 --model m.gguf
# Shares its build directory with scripts/test.sh, so the second of the two builds nothing new.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/llmserve/target}"
scripts/patch-engine.sh
exec cargo run --release --locked --bin llmserve -- "$@"
