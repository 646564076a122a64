#!/usr/bin/env bash
# Builds the image users get from ./Dockerfile with podman (no Docker engine needed), runs it on loopback
# and checks it: deploy/deploy.sh with its smoke check (a chat, a stream to [DONE], /metrics), the
# process is not root, the image's HEALTHCHECK passes, and `podman stop` (SIGTERM) drains an in-flight
# stream to [DONE] and exits 0 within the drain timeout.
#
# The Dockerfile's `build` stage (a 30-minute compile) is replaced by the binary and default model this
# machine already has (`--build-context build=DIR`); the runtime stage is the real one. Its base,
# debian:bookworm-slim, is made once with `mmdebstrap --variant=minbase` and cached, so that no registry is
# needed. Run by scripts/test.sh after the cargo tests; skipped with a message where podman cannot run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cache="${LLMSERVE_CACHE_DIR:-$HOME/.cache/llmserve}"
target="${CARGO_TARGET_DIR:-$cache/target}"
binary="$target/release/llmserve"
model="$cache/models/SmolLM2-135M-Instruct.Q8_0.gguf"
image="localhost/llmserve:image-test"
# The server's default --drain-timeout.
drain_timeout=30

skip() { echo "image-test: SKIPPED: $*"; exit 0; }
command -v podman >/dev/null && command -v mmdebstrap >/dev/null \
  || skip "podman or mmdebstrap is not installed (scripts/test-tools.sh installs them with apt)"
[ -x "$binary" ] || { echo "image-test: no $binary: build first (cargo build --release)" >&2; exit 1; }
[ -s "$model" ] || { echo "image-test: no $model: start llmserve once to fetch it" >&2; exit 1; }

# Rootful podman inside a VM without systemd: runc, cgroupfs, file events, and ulimits no higher than ours.
conf="$cache/containers.conf"
at_most() { if [ "$1" = unlimited ] || [ "$1" -gt "$2" ]; then echo "$2"; else echo "$1"; fi; }
nofile="$(at_most "$(ulimit -Hn)" 65536)"
nproc="$(at_most "$(ulimit -Hu)" 4096)"
cat > "$conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$conf"
podman info >/dev/null 2>&1 || skip "podman cannot run here: $(podman info 2>&1 | tail -n1)"

# The base image, checked rather than trusted: a cached tar must be a readable tar of a Debian root, and
# the image made from it must run. Whatever fails a check is made again, once.
base="docker.io/library/debian:bookworm-slim"
tar="$cache/images/bookworm-minbase.tar"
base_tar_is_valid() {
  [ -f "$tar" ] && [ -s "$tar" ] && tar -tf "$tar" 2>/dev/null | grep -Ex '(\./)?etc/debian_version' >/dev/null
}
make_base_tar() {
  rm -rf "$tar" "$tar.partial"
  mkdir -p "$(dirname "$tar")"
  # --format=tar: mmdebstrap otherwise picks the format from the file name, and `.partial` names none, so
  # it would write a directory tree (what broke fresh machines before).
  mmdebstrap --quiet --variant=minbase --format=tar bookworm "$tar.partial"
  mv "$tar.partial" "$tar"
  base_tar_is_valid || { echo "image-test: FAILED: mmdebstrap wrote no valid tar at $tar" >&2; exit 1; }
}
base_image_runs() {
  podman image exists "$base" && podman run --rm --pull=never --network=none "$base" test -f /etc/debian_version >/dev/null 2>&1
}
if ! base_image_runs; then
  podman rmi --force "$base" >/dev/null 2>&1 || true
  base_tar_is_valid || { echo "image-test: making the base image with mmdebstrap (cache at $tar)"; make_base_tar; }
  if ! podman import --quiet "$tar" "$base" >/dev/null || ! base_image_runs; then
    echo "image-test: the cached base tar did not import and run; making it again" >&2
    podman rmi --force "$base" >/dev/null 2>&1 || true
    make_base_tar
    podman import --quiet "$tar" "$base" >/dev/null
    base_image_runs || { echo "image-test: FAILED: the base image from $tar does not run" >&2; exit 1; }
  fi
fi

context="$(mktemp -d)"
cleanup() {
  podman rm -f "${name:-}" >/dev/null 2>&1 || true
  rm -rf "$context"
}
trap cleanup EXIT
mkdir -p "$context/out/cache/models"
cp "$binary" "$context/out/llmserve"
ln "$model" "$context/out/cache/models/" 2>/dev/null || cp "$model" "$context/out/cache/models/"
podman build --quiet --format docker --pull=never --build-context "build=$context" -t "$image" . >/dev/null
echo "image-test: built $image ($(podman image inspect "$image" --format '{{.Size}}') bytes)"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
name="llmserve-$port"
base_url="http://127.0.0.1:$port"
# Healthcheck timers need systemd, which this machine lacks; `podman healthcheck run` below runs it once.
# deploy/deploy.sh runs the image as users would and smoke-checks it (deploy/smoke.sh).
deploy/deploy.sh image "$image" "$port" 2>&1 | grep -v 'level=error msg=".*systemd' || exit 1
# The Kubernetes manifests' probes point at what this binary serves.
deploy/k8s/validate.sh "$base_url"

# A client as users have one: the official openai SDK, streaming.
python="${LLMSERVE_TEST_PYTHON:-$cache/test-venv/bin/python}"
"$python" - "$base_url/v1" <<'PY' || { echo "image-test: FAILED: the openai SDK stream" >&2; exit 1; }
import sys
import openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0, timeout=60)
stream = client.chat.completions.create(model=client.models.list().data[0].id, stream=True, max_tokens=16,
                                        messages=[{"role": "user", "content": "Say hello."}])
text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
assert text.strip(), "the stream carried no text"
print(f"image-test: ok: openai SDK streamed {text!r}")
PY

uid="$(podman exec "$name" id -u)"
[ "$uid" != 0 ] || { echo "image-test: FAILED: the server runs as root" >&2; exit 1; }
echo "image-test: ok: runs as uid $uid"
podman healthcheck run "$name" >/dev/null || { echo "image-test: FAILED: the HEALTHCHECK fails" >&2; exit 1; }
echo "image-test: ok: HEALTHCHECK passes"

# A stream long enough to be running when SIGTERM arrives.
stream="$context/stream.txt"
curl -sS -N --max-time 120 -H 'Content-Type: application/json' \
  -d '{"prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": 400, "temperature": 0, "stream": true}' \
  "$base_url/v1/completions" > "$stream" &
client=$!
for _ in $(seq 100); do grep -q '^data: {' "$stream" 2>/dev/null && break; sleep 0.1; done
grep -q '^data: {' "$stream" || { echo "image-test: FAILED: the stream sent nothing" >&2; exit 1; }
! grep -q '^data: \[DONE\]' "$stream" || { echo "image-test: FAILED: the stream ended before the stop" >&2; exit 1; }
started=$SECONDS
podman stop --time "$((drain_timeout + 10))" "$name" >/dev/null 2>&1
took=$((SECONDS - started))
wait "$client" || true
exit_code="$(podman inspect "$name" --format '{{.State.ExitCode}}')"
[ "$exit_code" = 0 ] || { echo "image-test: FAILED: exit code $exit_code after SIGTERM" >&2; exit 1; }
[ "$took" -le "$drain_timeout" ] || { echo "image-test: FAILED: the stop took $took s (drain timeout $drain_timeout s)" >&2; exit 1; }
[ "$(grep '^data: ' "$stream" | tail -n1)" = "data: [DONE]" ] \
  || { echo "image-test: FAILED: the in-flight stream did not end with [DONE]: $(tail -c 300 "$stream")" >&2; exit 1; }
echo "image-test: ok: SIGTERM drained the in-flight stream to [DONE] ($(grep -c '^data: {' "$stream") chunks) and exited 0 in $took s"
echo "image-test: all checks passed"
