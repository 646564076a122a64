#!/usr/bin/env bash
# Renders every overlay with `kubectl kustomize` and validates it strictly: core kinds against the Kubernetes
# schemas (PyPI kubernetes-validate); HTTPRoute, ServiceMonitor, PrometheusRule and KEDA ScaledObject with the
# npm kubernetes-models schemas (validate-crds.mjs names the upstream versions); the InferencePool against the
# CRD schema of the Gateway API Inference Extension v1.6.0 vendored in schemas/, and how the objects fit
# together (check-rendered.py); the PrometheusRule must match deploy/observability/.
# With a base URL, also asks a running llmserve for every probe path the rendered Deployments name, and reads
# its /metrics as the endpoint picker does, so that the manifests can only point at what the binary serves.
# Usage: deploy/k8s/validate.sh [BASE_URL]      (run by deploy/image-test.sh against the container)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
validate="${KUBERNETES_VALIDATE:-${LLMSERVE_CACHE_DIR:-$HOME/.cache/llmserve}/test-venv/bin/kubernetes-validate}"
node_modules="${LLMSERVE_NODE_MODULES:-${LLMSERVE_CACHE_DIR:-$HOME/.cache/llmserve}/node-env/node_modules}"
command -v kubectl >/dev/null || { echo "k8s: kubectl is needed for kustomize" >&2; exit 1; }
rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT
"$here/components/monitoring/build-prometheusrule.sh" "$rendered/prometheusrule.yaml"
cmp -s "$rendered/prometheusrule.yaml" "$here/components/monitoring/prometheusrule.yaml" \
  || { echo "k8s: FAILED: prometheusrule.yaml is stale: run deploy/k8s/components/monitoring/build-prometheusrule.sh" >&2; exit 1; }
rm "$rendered/prometheusrule.yaml"
for overlay in "$here"/overlays/*/; do
  name="$(basename "$overlay")"
  kubectl kustomize "$overlay" > "$rendered/$name.yaml"
  "$validate" --strict --quiet --no-warn "$rendered/$name.yaml" \
    || { echo "k8s: FAILED: overlay $name does not validate" >&2; exit 1; }
  NODE_MODULES="$node_modules" node "$here/validate-crds.mjs" "$rendered/$name.yaml" >/dev/null \
    || { echo "k8s: FAILED: the custom resources of overlay $name do not validate" >&2; exit 1; }
  # How the objects fit together (replicas under an autoscaler, selectors, models files and keys, network
  # policies, the InferencePool against its vendored schema, the endpoint picker's configuration).
  "$(dirname "$validate")/python" "$here/check-rendered.py" "$rendered/$name.yaml" \
    || { echo "k8s: FAILED: overlay $name: how its objects fit together (above)" >&2; exit 1; }
  echo "k8s: ok: overlay $name validates"
done
if [ -n "${1:-}" ]; then
  paths="$(cat "$rendered"/*.yaml | sed -n 's/^ *path: \(\/health[^ ]*\)$/\1/p' | sort -u)"
  [ -n "$paths" ] || { echo "k8s: FAILED: no probe paths in the rendered manifests" >&2; exit 1; }
  for path in $paths; do
    curl -fsS --max-time 5 -o /dev/null "${1%/}$path" || { echo "k8s: FAILED: probe $path does not answer 200" >&2; exit 1; }
  done
  # The probes use the port named http: the image's EXPOSE 8080, where the server listens.
  ports="$(cat "$rendered"/*.yaml | sed -n 's/^ *-\{0,1\} *containerPort: \([0-9]*\)$/\1/p' | sort -u | tr '\n' ' ')"
  case " $ports" in *" 8080 "*) ;; *) echo "k8s: FAILED: no container port 8080 (ports: $ports)" >&2; exit 1 ;; esac
  echo "k8s: ok: every probe path answers 200 ($(echo $paths)); container ports $ports"
  # The endpoint picker's metric names (overlays/inference-pool/epp-config.yaml): each gauge one unlabelled
  # series. (The container has no --metrics-port and no keys: /metrics is on the API port and open.)
  curl -fsS --max-time 10 -o "$rendered/metrics.txt" "${1%/}/metrics" \
    || { echo "k8s: FAILED: GET /metrics does not answer 200" >&2; exit 1; }
  for overlay in "$here"/overlays/*/; do
    "$(dirname "$validate")/python" "$here/check-rendered.py" "$rendered/$(basename "$overlay").yaml" \
      --metrics "$rendered/metrics.txt" \
      || { echo "k8s: FAILED: the running llmserve's /metrics lacks what the endpoint picker reads" >&2; exit 1; }
  done
  echo "k8s: ok: /metrics serves the endpoint picker's gauges, one unlabelled series each"
fi
