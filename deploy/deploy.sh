#!/usr/bin/env bash
# Deploys llmserve and verifies the deployment before saying so: the rollout (or container) comes up, then
# deploy/smoke.sh checks readiness, /v1/models, a chat completion, a stream to [DONE] and /metrics. Exits
# non-zero with one clear line at the first failure.
#
#   deploy/deploy.sh k8s OVERLAY [NAMESPACE]    kubectl apply -k deploy/k8s/overlays/OVERLAY, wait for the
#                                               rollout, smoke-check through a port-forward to the Service
#                                               (NAMESPACE: llmserve, the one the overlays name; the Secrets
#                                               of docs/deployment.md must exist there)
#   deploy/deploy.sh image IMAGE [PORT]         run IMAGE with podman (or docker) on 127.0.0.1:PORT (8080)
#                                               and smoke-check it; the container keeps running
#
# LLMSERVE_API_KEY, when set, is passed to the smoke check (the overlays' models files configure keys: the
# `app` entry of the Secret llmserve-keys).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fail() { echo "deploy: FAILED: $*" >&2; exit 1; }
mode="${1:-}"
case "$mode" in
  k8s)
    overlay="${2:?usage: deploy/deploy.sh k8s OVERLAY [NAMESPACE]}"
    namespace="${3:-llmserve}"
    dir="$here/k8s/overlays/$overlay"
    [ -d "$dir" ] || fail "no overlay $dir"
    kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace" >/dev/null \
      || fail "cannot create namespace $namespace"
    kubectl apply -n "$namespace" -k "$dir" || fail "kubectl apply -k $dir"
    # The startup probe allows 10 minutes for loading (60 on the GPU overlay); the rollout waits as long.
    kubectl rollout status -n "$namespace" deployment/llmserve --timeout=65m \
      || fail "the rollout did not complete (kubectl describe -n $namespace deployment/llmserve)"
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    metrics_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    # The API, and /metrics on its own port (--metrics-port 9091).
    kubectl port-forward -n "$namespace" service/llmserve "$port:80" "$metrics_port:9091" >/dev/null 2>&1 &
    forward=$!
    trap 'kill "$forward" 2>/dev/null || true' EXIT
    SMOKE_METRICS_URL="http://127.0.0.1:$metrics_port/metrics" \
      "$here/smoke.sh" "http://127.0.0.1:$port" "${LLMSERVE_API_KEY:-}" || fail "the smoke check failed"
    ;;
  image)
    image="${2:?usage: deploy/deploy.sh image IMAGE [PORT]}"
    port="${3:-8080}"
    engine="$(command -v podman || command -v docker)" || fail "neither podman nor docker is installed"
    name="llmserve-$port"
    "$engine" rm -f "$name" >/dev/null 2>&1 || true
    "$engine" run -d --name "$name" -p "127.0.0.1:$port:8080" "$image" >/dev/null || fail "$engine run $image"
    "$here/smoke.sh" "http://127.0.0.1:$port" "${LLMSERVE_API_KEY:-}" \
      || fail "the smoke check failed ($engine logs $name)"
    echo "deploy: $image runs as $name on http://127.0.0.1:$port"
    ;;
  *)
    echo "usage: deploy/deploy.sh k8s OVERLAY [NAMESPACE] | deploy/deploy.sh image IMAGE [PORT]" >&2
    exit 2
    ;;
esac
echo "deploy: verified"
