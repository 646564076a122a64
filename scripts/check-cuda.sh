#!/usr/bin/env bash
# Type-checks the `cuda` build (every target) on a machine without a GPU: the CUDA 13.2 toolkit comes from
# PyPI wheels (scripts/cuda-toolchain.sh), build scripts compile the kernels with its nvcc, and rustc checks
# our code against the CUDA-enabled mistral.rs. A full `cuda` build (about 37 min cold on 2 cores) is
# `CUDA_COMPUTE_CAP=90 cargo build --release --features cuda` after the same eval.
# Its own target dir, so that switching features never invalidates the CPU build's artifacts.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cache="${LLMSERVE_CACHE_DIR:-$HOME/.cache/llmserve}"
scripts/patch-engine.sh
eval "$(scripts/cuda-toolchain.sh "$cache/cuda-13.2")"
export CARGO_TARGET_DIR="${LLMSERVE_CUDA_TARGET_DIR:-$cache/target-cuda}"
cargo check --release --locked --features cuda --all-targets
