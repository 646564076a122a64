#!/usr/bin/env bash
# Installs the test-only tools that do not come from cargo or pip: Prometheus and promtool (Debian's
# `prometheus` package) for the metrics and alert-rule tests, Node.js with npm for the Node SDK tests,
# redis-server and haproxy for the replicas that share limits and stored responses, Chromium for the browser tests, podman, runc and mmdebstrap for the container
# image test, and qemu-user to run the binary on a CPU without AVX2. Idempotent; needs root or sudo for apt.
set -euo pipefail
missing=()
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
# The container image test (deploy/image-test.sh): podman and its runtime, and mmdebstrap for the base image.
command -v podman >/dev/null && command -v runc >/dev/null || missing+=(podman buildah runc uidmap)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
# The browser tests of the chat page and Swagger UI (tests/browser, Playwright) drive Debian's Chromium: no
# browser download reaches these machines.
command -v chromium >/dev/null || missing+=(chromium)
# Limits shared across replicas (tests/integration/shared_limits.rs) start their own on a free port.
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
# Replicas behind a real load balancer (tests/integration/replicas.rs): Debian's HAProxy.
command -v haproxy >/dev/null || missing+=(haproxy)
# The Redis TLS test makes its CA and server certificate with openssl.
command -v openssl >/dev/null || missing+=(openssl)
# The start-up CPU check (tests/integration/startup.rs) runs the binary on emulated CPUs without AVX2.
command -v qemu-x86_64 >/dev/null || missing+=(qemu-user)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo -n); else
  echo "test-tools: need root (or sudo) to apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# The package lists may be stale or absent on a fresh machine.
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
# Debian's packages may start a system Prometheus on :9090 and a Redis on :6379; the tests run their own
# on free ports.
echo "test tools installed: ${missing[*]}"
