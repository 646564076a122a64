#!/usr/bin/env python3
"""Server overhead: what llmserve adds before the engine starts on a request, per concurrency level.

Starts llmserve (JSON logs), drives it with bench/llmbench.py at each level, and reads every request's
`queue_ms` from the log: arrival → the request holds a slot and its sequence is handed to the engine
(validation, prompt counting, admission). With concurrency ≤ --max-num-seqs nothing waits for a slot, so this
is llmserve's share of the time to first token (`ttft_ms` − `engine_ttft_ms`).

  python3 bench/overhead.py [--binary PATH] [--levels 1,4,16] [--duration 20]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from server_process import start_llmserve

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("LLMSERVE_CACHE_DIR", os.path.expanduser("~/.cache/llmserve"))


def main():
    parser = argparse.ArgumentParser()
    default_binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(CACHE, "target")),
                                  "release", "llmserve")
    parser.add_argument("--binary", default=default_binary)
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    server, base = start_llmserve(args.binary, ["--log-format", "json"], dict(os.environ, RUST_LOG="info"), log)
    print(f"{'concurrency':>11}  {'requests':>8}  {'p50 ms':>7}  {'p90 ms':>7}  {'p99 ms':>7}")
    for level in [int(c) for c in args.levels.split(",")]:
        start = os.path.getsize(log.name)
        subprocess.run([sys.executable, os.path.join(HERE, "llmbench.py"), "--base-url", base + "/v1",
                        "--concurrency", str(level), "--duration", str(args.duration),
                        "--max-tokens", str(args.max_tokens)], check=True, stdout=subprocess.DEVNULL)
        time.sleep(1)
        with open(log.name) as f:
            f.seek(start)
            queue = [json.loads(line)["queue_ms"] for line in f
                     if '"queue_ms"' in line and '"status":200' in line]
        queue.sort()
        pick = lambda q: queue[min(len(queue) - 1, int(q * len(queue)))]
        print(f"{level:>11}  {len(queue):>8}  {statistics.median(queue):>7.2f}  {pick(0.9):>7.2f}  {pick(0.99):>7.2f}")
    server.terminate()
    server.wait()
    os.unlink(log.name)


if __name__ == "__main__":
    main()
