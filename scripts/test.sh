#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: Python SDK environment, default model (fetched on first use
# by the test harness), unit and integration tests against the real engine.
# Build artifacts and the model cache live outside the clone, so later runs reuse them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/llmserve/target}"
export LLMSERVE_CACHE_DIR="${LLMSERVE_CACHE_DIR:-$HOME/.cache/llmserve}"
scripts/python-env.sh
cargo test --release --locked "$@"
