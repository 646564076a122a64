#!/usr/bin/env bash
# Assembles a CUDA 13.2 toolkit from PyPI wheels (no NVIDIA installer, no GPU needed) and prints the
# environment that `cargo build --release --features cuda` needs. Usage:
#   eval "$(scripts/cuda-toolchain.sh)"            # installs once into ~/.cache/llmserve/cuda-13.2
#   CUDA_COMPUTE_CAP=90 cargo build --release --features cuda
# 13.2 because mistralrs-quant 0.8.1's build script accepts nvcc 11.4-13.2 only. The CUDA 13 wheels
# (nvidia-cuda-nvcc & co.) share one `nvidia/cu13` prefix laid out like a toolkit; the cu12 nvcc wheel has
# no `nvcc` driver, only ptxas. The driver library (libcuda) comes with the GPU machine's driver at run time.
set -euo pipefail
prefix="${1:-${LLMSERVE_CACHE_DIR:-$HOME/.cache/llmserve}/cuda-13.2}"
site="$prefix/site"
home="$site/nvidia/cu13"
if [ ! -x "$home/bin/nvcc" ] || [ ! -e "$home/include/crt/host_config.h" ] || [ -z "$(find "$home" -name cicc -print -quit)" ]; then
  # pip --target does not merge into an existing tree: install every wheel at once into a clean one.
  rm -rf "$site"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$site" \
    nvidia-cuda-nvcc==13.2.86 nvidia-cuda-runtime==13.2.86 nvidia-cuda-nvrtc==13.2.86 \
    nvidia-cuda-cccl==13.2.86 nvidia-cuda-crt==13.2.86 nvidia-nvvm==13.2.86 'nvidia-cublas>=13,<14' 'nvidia-curand>=10.4,<11' 'nvidia-nvjitlink>=13,<14' >&2
  # The linker wants unversioned names (-lcudart, -lcublas, ...); the wheels ship only the .so.N files.
  for lib in "$home"/lib/*.so.*; do
    base="${lib%%.so.*}.so"
    [ -e "$base" ] || ln -s "$(basename "$lib")" "$base"
  done
  [ -e "$home/lib64" ] || ln -s lib "$home/lib64"
fi
# libcuda is the driver's, not the toolkit's: no wheel has it. Like the toolkit's own stubs, a link-time
# stub exposes the driver API's names (from cuda.h) under the soname libcuda.so.1, so that at run time the
# GPU machine's real driver library is loaded. It lives in lib/stubs, on LIBRARY_PATH only (never on
# LD_LIBRARY_PATH, where it would shadow the driver).
if [ ! -e "$home/lib/stubs/libcuda.so" ]; then
  mkdir -p "$home/lib/stubs"
  grep -ohE '\bcu[A-Z][A-Za-z0-9_]*\b' "$home/include/cuda.h" "$home/include/cudaTypedefs.h" | sort -u \
    | sed 's/.*/void &(void) {}/' > "$home/lib/stubs/libcuda_stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$home/lib/stubs/libcuda.so" "$home/lib/stubs/libcuda_stub.c"
fi
cat <<ENV
export CUDA_HOME="$home" CUDA_PATH="$home" CUDA_ROOT="$home"
export PATH="$home/bin:\$PATH"
export LIBRARY_PATH="$home/lib:$home/lib/stubs:\${LIBRARY_PATH:-}" LD_LIBRARY_PATH="$home/lib:\${LD_LIBRARY_PATH:-}"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
ENV
