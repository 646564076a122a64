#!/usr/bin/env bash
# Builds the peers bench/compare.py measures llmserve against, once, outside CI (about 20 and 10 minutes
# on 2 cores), into ${LLMSERVE_CACHE_DIR:-~/.cache/llmserve}/peers:
#   - mistral.rs's own server: `cargo install mistralrs-cli --version 0.8.1`, built for x86-64-v3 like
#     llmserve (anything else would compare different SIMD kernels);
#   - llama.cpp's `llama-server`: the llama.cpp sources vendored in llama-cpp-python's PyPI source
#     distribution, built with cmake and ninja from PyPI.
# Usage: bench/build-peers.sh [mistralrs|llama.cpp]...   (default: both)
set -euo pipefail
peers="${LLMSERVE_CACHE_DIR:-$HOME/.cache/llmserve}/peers"
mkdir -p "$peers"
want=("${@:-mistralrs llama.cpp}")
for peer in ${want[*]}; do
  case "$peer" in
    mistralrs)
      RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR="$peers/target" \
        cargo install mistralrs-cli --version 0.8.1 --locked --root "$peers"
      "$peers/bin/mistralrs" --version
      ;;
    llama.cpp)
      python3 -m venv "$peers/build-venv"
      "$peers/build-venv/bin/pip" install --quiet cmake ninja scikit-build-core
      work="$peers/llama-cpp-python"
      rm -rf "$work" && mkdir -p "$work"
      PATH="$peers/build-venv/bin:$PATH" "$peers/build-venv/bin/pip" download --quiet --no-deps --no-binary :all: --no-build-isolation \
        -d "$work" llama-cpp-python==0.3.36
      tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
      rm -rf "$peers/llama.cpp" && cp -r "$work"/llama_cpp_python-*/vendor/llama.cpp "$peers/llama.cpp"
      cd "$peers/llama.cpp"
      # Explicit instruction sets, never GGML_NATIVE: on a CPU that reports AMX the native build crashes at
      # start (SIGSEGV/SIGILL), and the benchmark then has no peer. x86-64-v3 as llmserve is built, plus the
      # AVX-512 sets the CPU reports (llmserve picks its AVX-512 VNNI kernel at run time); AMX stays off.
      flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
        -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
      cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
      for set in avx512f:GGML_AVX512 avx512_vnni:GGML_AVX512_VNNI avx512_bf16:GGML_AVX512_BF16 \
        avx512vbmi:GGML_AVX512_VBMI; do
        if [[ "$cpu_flags" == *" ${set%%:*} "* ]]; then flags+=("-D${set##*:}=ON"); fi
      done
      echo "llama.cpp build flags: ${flags[*]}"
      PATH="$peers/build-venv/bin:$PATH" cmake -S . -B build -G Ninja "${flags[@]}" -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_SERVER=ON -DCMAKE_BUILD_TYPE=Release
      PATH="$peers/build-venv/bin:$PATH" cmake --build build --target llama-server -j"$(nproc)"
      build/bin/llama-server --version
      ;;
    *) echo "unknown peer: $peer (mistralrs, llama.cpp)" >&2; exit 2 ;;
  esac
done
