#!/usr/bin/env python3
"""Memory of the prefix cache over many distinct prefixes: the server's RSS while --requests different
prompts (each longer than the cache's minimum match) pass through a cache of --prefix-cache-n entries.

Every finished request stores its KV as an entry; beyond the entry count (or the --prefix-cache-mib
budget) the least recently used go. RSS must level off once the cache is full, not grow per request.

  python3 bench/prefix_cache_rss.py --requests 1000 --prefix-cache-n 16
"""
import argparse
import json
import os
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from server_process import start_llmserve  # noqa: E402

CACHE = os.environ.get("LLMSERVE_CACHE_DIR", os.path.expanduser("~/.cache/llmserve"))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(CACHE, "target"))


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def post(base, body):
    request = urllib.request.Request(f"{base}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def metric(base, name):
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llmserve", default=os.path.join(TARGET, "release", "llmserve"))
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--prefix-cache-n", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=4)
    args = parser.parse_args()
    proc, base = start_llmserve(args.llmserve, ["--prefix-cache-n", str(args.prefix_cache_n)])
    try:
        model = json.load(urllib.request.urlopen(f"{base}/v1/models"))["data"][0]["id"]
        marks = {0, 10, 50, 100, 250, 500, 750, args.requests}
        print(f"| requests | RSS (MiB) | prefix-cache hits |\n|---|---|---|")
        started = time.perf_counter()
        for i in range(args.requests + 1):
            if i in marks:
                hits = metric(base, "llmserve_prefix_cache_hits_total")
                print(f"| {i} | {rss_mib(proc.pid):.0f} | {hits:.0f} |", flush=True)
            if i == args.requests:
                break
            prompt = (f"Request {i}: the number {i * 7919 % 100003} is written on a card. Describe in one "
                      f"sentence where such a number could appear, and name one property of it.")
            post(base, {"model": model, "messages": [{"role": "user", "content": prompt}],
                        "max_tokens": args.max_tokens, "temperature": 0})
        print(f"\n{args.requests} requests in {time.perf_counter() - started:.0f} s, "
              f"--prefix-cache-n {args.prefix_cache_n}")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
