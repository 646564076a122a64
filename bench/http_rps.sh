#!/usr/bin/env bash
# Plain HTTP request rate of llmserve (GET /v1/models), measured with wrk (Debian `wrk`), server and load
# generator sharing the machine. Runs four times: with the default access log (one info line per request on
# stdout); with RUST_LOG=warn (what the log line costs); then, both with RUST_LOG=warn and a models file,
# without keys and with 100 keys (the one presented last, with limits): what authentication and limits cost.
# Usage: bench/http_rps.sh [DURATION_S] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration="${1:-10}"
connections="${2:-64}"
binary="${CARGO_TARGET_DIR:-$HOME/.cache/llmserve/target}/release/llmserve"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
models="$(mktemp -d)"
trap 'rm -rf "$models"' EXIT
model_file="${LLMSERVE_CACHE_DIR:-$HOME/.cache/llmserve}/models/SmolLM2-135M-Instruct.Q8_0.gguf"
{
  printf '[[models]]\nname = "SmolLM2-135M-Instruct"\n[[models.versions]]\nversion = "v1"\nsource = "%s"\n' "$model_file"
  for i in $(seq 1 100); do
    printf '[[keys]]\nid = "k%d"\nkey = "sk-bench-%d"\nrole = "user"\nrpm = 100000000\ntpm = 100000000000\n' "$i" "$i"
  done
} > "$models/keys.toml"
sed '/^\[\[keys\]\]/,$d' "$models/keys.toml" > "$models/open.toml"
for mode in info warn open key; do
  log=$mode; args=(); header=()
  case "$mode" in
    open) log=warn; args=(--config "$models/open.toml") ;;
    key) log=warn; args=(--config "$models/keys.toml"); header=(-H "Authorization: Bearer sk-bench-100") ;;
  esac
  RUST_LOG=$log "$binary" --port "$port" "${args[@]}" > /dev/null 2>&1 &
  pid=$!
  until curl -sf "${header[@]}" "http://127.0.0.1:$port/v1/models" > /dev/null; do sleep 0.2; done
  wrk -t2 -c"$connections" -d1s "${header[@]}" "http://127.0.0.1:$port/v1/models" > /dev/null  # warm-up
  echo "== $mode: RUST_LOG=$log, GET /v1/models, $connections connections, ${duration}s"
  wrk -t2 -c"$connections" -d"${duration}s" --latency "${header[@]}" "http://127.0.0.1:$port/v1/models" | grep -E "Requests/sec|Latency|50%|99%|requests in|Non-2xx"
  echo "server RSS: $(awk '/VmRSS/ {print $2/1024 " MB"}' /proc/$pid/status)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
