#!/usr/bin/env bash
# Smoke-checks a running llmserve: readiness, /v1/models, a chat completion, a stream to [DONE], /metrics.
# Usage: deploy/smoke.sh BASE_URL [API_KEY]     e.g. deploy/smoke.sh http://127.0.0.1:8080
# Exits non-zero with one clear line at the first failure; prints one line per passed check.
set -euo pipefail
base="${1:?usage: deploy/smoke.sh BASE_URL [API_KEY]}"
base="${base%/}"
auth=()
if [ -n "${2:-}" ]; then auth=(-H "Authorization: Bearer $2"); fi
fail() { echo "smoke: FAILED: $*" >&2; exit 1; }
ok() { echo "smoke: ok: $*"; }
get() { curl -sS --max-time 30 "${auth[@]}" "$base$1"; }
post() { curl -sS --max-time 120 "${auth[@]}" -H 'Content-Type: application/json' -d "$2" "$base$1"; }

ready=""
for _ in $(seq "${SMOKE_READY_TIMEOUT:-120}"); do
  if curl -fs --max-time 5 -o /dev/null "$base/health/ready"; then ready=1; break; fi
  sleep 1
done
[ -n "$ready" ] || fail "$base/health/ready did not answer 200 within ${SMOKE_READY_TIMEOUT:-120} s"
ok "ready"

models="$(get /v1/models)" || fail "GET /v1/models: no answer"
model="$(printf '%s' "$models" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p' | head -n1)"
[ -n "$model" ] || fail "GET /v1/models lists no model: $models"
ok "model $model"

chat="$(post /v1/chat/completions "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello.\"}],\"max_tokens\":8}")" \
  || fail "POST /v1/chat/completions: no answer"
printf '%s' "$chat" | grep -q '"object":"chat.completion"' || fail "chat completion: $chat"
printf '%s' "$chat" | grep -q '"completion_tokens":[1-9]' || fail "chat completion generated nothing: $chat"
ok "chat completion"

stream="$(post /v1/chat/completions "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"Count to five.\"}],\"max_tokens\":16,\"stream\":true}")" \
  || fail "streamed chat completion: no answer"
printf '%s' "$stream" | grep -q '^data: {"id":"chatcmpl-' || fail "stream has no chunk: $stream"
[ "$(printf '%s' "$stream" | grep '^data: ' | tail -n1)" = "data: [DONE]" ] || fail "stream does not end with [DONE]: $stream"
ok "stream to [DONE]"

metrics_url="${SMOKE_METRICS_URL:-$base/metrics}"
metrics="$(curl -sS --max-time 30 "${auth[@]}" "$metrics_url")" || fail "GET $metrics_url: no answer"
printf '%s' "$metrics" | grep -q '^llmserve_requests_total{' || fail "$metrics_url has no llmserve_requests_total"
ok "metrics"
echo "smoke: all checks passed against $base"
