#!/usr/bin/env bash
# Plain HTTP request rate of llmserve (GET /v1/models), measured with wrk (Debian `wrk`), server and load
# generator sharing the machine. Runs twice: with the default access log (one info line per request on
# stdout) and with RUST_LOG=warn, to show what the log line costs.
# Usage: bench/http_rps.sh [DURATION_S] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration="${1:-10}"
connections="${2:-64}"
binary="${CARGO_TARGET_DIR:-$HOME/.cache/llmserve/target}/release/llmserve"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for log in info warn; do
  RUST_LOG=$log "$binary" --port "$port" > /dev/null 2>&1 &
  pid=$!
  until curl -sf "http://127.0.0.1:$port/v1/models" > /dev/null; do sleep 0.2; done
  wrk -t2 -c"$connections" -d1s "http://127.0.0.1:$port/v1/models" > /dev/null  # warm-up
  echo "== RUST_LOG=$log, GET /v1/models, $connections connections, ${duration}s"
  wrk -t2 -c"$connections" -d"${duration}s" --latency "http://127.0.0.1:$port/v1/models" | grep -E "Requests/sec|Latency|50%|99%|requests in|Non-2xx"
  echo "server RSS: $(awk '/VmRSS/ {print $2/1024 " MB"}' /proc/$pid/status)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
