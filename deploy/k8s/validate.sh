#!/usr/bin/env bash
# Renders every overlay with `kubectl kustomize` and validates it strictly: core kinds against the Kubernetes
# schemas (PyPI kubernetes-validate), custom resources (HTTPRoute, ServiceMonitor, PrometheusRule) with the
# npm kubernetes-models schemas (validate-crds.mjs); the PrometheusRule must match deploy/observability/.
# With a base URL, also asks a running llmserve for every probe path the rendered Deployments name, so that
# the manifests can only point at endpoints the binary serves.
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
  # A Deployment an HPA scales must not set `replicas` (every apply would reset the HPA's count to it), and
  # no Deployment's selector may match another Deployment's pods (the stable track would count the canary's).
  "$(dirname "$validate")/python" - "$rendered/$name.yaml" <<'PY' \
    || { echo "k8s: FAILED: overlay $name: a Deployment's replicas or selector (above)" >&2; exit 1; }
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
deployments = [d for d in docs if d["kind"] == "Deployment"]
scaled = {d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
faults = [f"{d['metadata']['name']} sets replicas, but an HPA scales it"
          for d in deployments if d["metadata"]["name"] in scaled and "replicas" in d["spec"]]
for d in deployments:
    wanted = d["spec"]["selector"]["matchLabels"].items()
    for other in deployments:
        labels = other["spec"]["template"]["metadata"]["labels"]
        if other is not d and all(labels.get(k) == v for k, v in wanted):
            faults.append(f"{d['metadata']['name']}'s selector matches {other['metadata']['name']}'s pods")
if faults:
    print("\n".join(faults), file=sys.stderr)
    sys.exit(1)
PY
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
fi
