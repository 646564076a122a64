#!/usr/bin/env bash
# Proves cold set-up: runs the README's two commands exactly as written, in a fresh clone of HEAD, against
# empty caches, and reports the wall time of each.
#
#   scripts/fresh-check.sh [--cache-dir DIR] [--warm-runs N] [--keep]
#
# What is empty:
# - LLMSERVE_CACHE_DIR: a new directory (the model, the Python venv, the Node modules, the CUDA toolkit
#   wheels, the base-image tar and the `cuda` target dir all live under it), or DIR, which must be empty
#   or absent. `--cache-dir ~/.cache/llmserve` on a machine that never ran llmserve leaves the default
#   caches warm afterwards.
# - CARGO_TARGET_DIR: <cache>/target, as the scripts default to.
# - the podman store: a storage root of its own (CONTAINERS_STORAGE_CONF), removed at the end, so that no
#   image from before (the Debian base, an earlier llmserve image) is seen.
# - the clone: `git clone` of HEAD, so nothing untracked or ignored here (the patched engine sources, a
#   target/ or a venv in the tree) is seen. Uncommitted changes are NOT checked: commit first.
# What it cannot empty: Debian packages already installed (scripts/test-tools.sh installs what is missing)
# and the download caches of cargo, pip and npm, which only save network time.
#
# Steps: `scripts/serve.sh` is started and timed until /health/ready answers 200 on :8080 (build, model
# fetch and load), then stopped with SIGTERM; `scripts/test.sh` is timed to its end. With --warm-runs N the
# test command then runs N more times on the caches it just filled, and each such run must compile nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache=""
warm_runs=0
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cache-dir) cache="$2"; shift 2 ;;
    --warm-runs) warm_runs="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "usage: scripts/fresh-check.sh [--cache-dir DIR] [--warm-runs N] [--keep]" >&2; exit 2 ;;
  esac
done

work="$(mktemp -d "${TMPDIR:-/var/tmp}/llmserve-fresh.XXXXXX")"
if [ -z "$cache" ]; then
  cache="$work/cache"
elif [ -e "$cache" ] && [ -n "$(ls -A "$cache")" ]; then
  echo "fresh-check: $cache is not empty; give an empty or absent directory" >&2
  exit 2
fi
mkdir -p "$cache" "$work/logs" "$work/containers"
cache="$(cd "$cache" && pwd)"
logs="$work/logs"
say() { echo "fresh-check: $*" | tee -a "$logs/summary.txt"; }

# The podman store of this check only.
cat >"$work/containers/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$work/containers/storage"
runroot = "$work/containers/run"
CONF
export CONTAINERS_STORAGE_CONF="$work/containers/storage.conf"
export LLMSERVE_CACHE_DIR="$cache" CARGO_TARGET_DIR="$cache/target"
unset LLMSERVE_CUDA_TARGET_DIR LLMSERVE_TEST_PYTHON LLMSERVE_SKIP_CUDA_CHECK

server_pid=""
finish() {
  status=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM -- "-$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  # This check's podman store: its containers and images removed (with the runtime settings the image
  # test wrote), then the store itself.
  if command -v podman >/dev/null && [ -d "$work/containers/storage" ]; then
    [ -f "$cache/containers.conf" ] && export CONTAINERS_CONF="$cache/containers.conf"
    podman rm --all --force >/dev/null 2>&1 || true
    podman rmi --all --force >/dev/null 2>&1 || true
    grep -o " $work/containers/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount >/dev/null 2>&1 || true
  fi
  rm -rf "$work/containers" "$work/llmserve"
  if [ "$status" -eq 0 ] && [ "$keep" -eq 0 ]; then
    case "$cache" in "$work"/*) rm -rf "$work" ;; *) rm -rf "$work/logs" && rmdir "$work" ;; esac
  else
    echo "fresh-check: logs kept in $logs" >&2
  fi
  exit "$status"
}
trap finish EXIT

if [ -n "$(git -C "$root" status --porcelain)" ]; then
  echo "fresh-check: note: uncommitted changes in $root are not part of this check (it clones HEAD)" >&2
fi
git clone --quiet --no-hardlinks "$root" "$work/llmserve"
cd "$work/llmserve"
say "checking $(git rev-parse --short HEAD) in $work/llmserve; caches in $cache"

if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then
  echo "fresh-check: something already listens on 127.0.0.1:8080, where the serve command serves" >&2
  exit 1
fi

# Command 1: scripts/serve.sh, in its own process group so that the stop reaches the server under cargo.
started=$SECONDS
setsid scripts/serve.sh >"$logs/serve.log" 2>&1 &
server_pid=$!
ready=0
while kill -0 "$server_pid" 2>/dev/null && [ $((SECONDS - started)) -lt 5400 ]; do
  if curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:8080/health/ready 2>/dev/null; then
    ready=1
    break
  fi
  sleep 2
done
serve_s=$((SECONDS - started))
if [ "$ready" -ne 1 ]; then
  tail -n 40 "$logs/serve.log" >&2
  say "FAILED: scripts/serve.sh was not ready after $serve_s s"
  exit 1
fi
curl -fsS --max-time 60 http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \
  -d '{"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}' >"$logs/serve-chat.json" \
  || { say "FAILED: the served model did not answer a chat"; exit 1; }
kill -TERM -- "-$server_pid"
wait "$server_pid" || true
server_pid=""
say "scripts/serve.sh: ready and answering in $serve_s s ($((serve_s / 60)) min $((serve_s % 60)) s)"

# Command 2: scripts/test.sh, cold.
started=$SECONDS
if ! scripts/test.sh >"$logs/test-cold.log" 2>&1; then
  tail -n 60 "$logs/test-cold.log" >&2
  say "FAILED: scripts/test.sh (cold) after $((SECONDS - started)) s"
  exit 1
fi
test_s=$((SECONDS - started))
say "scripts/test.sh: passed in $test_s s ($((test_s / 60)) min $((test_s % 60)) s)"

# The same command again on the caches it filled: it must pass and compile nothing.
for run in $(seq "$warm_runs"); do
  started=$SECONDS
  log="$logs/test-warm-$run.log"
  if ! scripts/test.sh >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    say "FAILED: scripts/test.sh (warm run $run) after $((SECONDS - started)) s"
    exit 1
  fi
  took=$((SECONDS - started))
  compiled="$(grep -cE '^\s+Compiling ' "$log" || true)"
  say "scripts/test.sh, warm run $run: passed in $took s ($((took / 60)) min $((took % 60)) s), $compiled crates compiled"
  [ "$compiled" -eq 0 ] || { say "FAILED: warm run $run compiled again: $(grep -E '^\s+Compiling ' "$log" | head -5)"; exit 1; }
done
say "passed"
