#!/usr/bin/env python3
"""Memory over many requests: starts llmserve, sends N short requests (chat and completions, streamed and
not) from C clients, and samples the server's RSS from /proc every N/20 requests; prints the samples, the
peak, the end, the RSS once idle, and the growth between the first and the last quarter (flat means no
leak).

  python3 bench/rss_soak.py [--requests 10000] [--concurrency 8] [-- extra llmserve flags]
"""
import argparse
import json
import os
import tempfile
import threading
import time
import urllib.request

from server_process import start_llmserve

CACHE = os.environ.get("LLMSERVE_CACHE_DIR", os.path.expanduser("~/.cache/llmserve"))
TOPICS = ["the sea", "trains", "the moon", "a garden", "winter", "bridges", "a market", "rivers"]


def rss_mb(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=2)
    parser.add_argument("flags", nargs="*", help="extra llmserve flags (after --)")
    args = parser.parse_args()
    binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(CACHE, "target")), "release", "llmserve")
    # Warnings and errors only: a failed request's cause is printed at the end.
    log = tempfile.NamedTemporaryFile("w+", prefix="llmserve-soak-", suffix=".log", delete=False)
    server, base = start_llmserve(binary, args.flags, dict(os.environ, RUST_LOG="warn"), log)
    samples = [(0, rss_mb(server.pid))]
    lock, done, failed = threading.Lock(), [0], [0]
    every = max(1, args.requests // 20)
    started = time.time()

    def client(worker):
        while True:
            with lock:
                if done[0] + failed[0] >= args.requests:
                    return
                seq = done[0] + failed[0] + worker
            # Alternating chat and completions, streamed and not; completions prompts are a few tokens so
            # that 10,000 requests fit in minutes on 2 cores.
            if seq % 4 < 2:
                path, payload = "/v1/completions", {"prompt": f"{seq} {TOPICS[seq % 8]}"}
            else:
                # A short system message replaces the template's default one (~20 tokens of prefill).
                path, payload = "/v1/chat/completions", {
                    "messages": [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": f"{seq}: one word about {TOPICS[seq % 8]}"}]}
            payload.update({"max_tokens": args.max_tokens, "temperature": 0.7, "stream": seq % 2 == 0})
            request = urllib.request.Request(base + path, json.dumps(payload).encode(),
                                             {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=300) as response:
                    response.read()
                ok = True
            except OSError:
                ok = False
            with lock:
                if ok:
                    done[0] += 1
                else:
                    failed[0] += 1
                n = done[0] + failed[0]
                if n % every == 0:
                    samples.append((n, rss_mb(server.pid)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - started
    peak, end = rss_mb(server.pid, "VmHWM"), rss_mb(server.pid)
    # The server returns freed memory to the OS once idle (src/memory.rs): what stays is what it keeps.
    time.sleep(3)
    idle = rss_mb(server.pid)
    server.terminate()
    server.wait()
    print(f"{done[0]} requests ok, {failed[0]} failed, in {elapsed:.0f} s ({done[0] / elapsed:.1f} req/s)")
    print("requests  RSS (MB)")
    for n, mb in samples:
        print(f"{n:>8}  {mb:.0f}")
    quarter = max(1, len(samples) // 4)
    first = sum(mb for _, mb in samples[1:1 + quarter]) / quarter
    last = sum(mb for _, mb in samples[-quarter:]) / quarter
    print(f"peak {peak:.0f} MB, end {end:.0f} MB, idle 3 s later {idle:.0f} MB, "
          f"mean of the last quarter - mean of the first: {last - first:+.0f} MB")
    with open(log.name) as f:
        problems = [line.rstrip() for line in f if "ERROR" in line or "WARN" in line]
    print(f"server log ({log.name}): {len(problems)} warnings and errors")
    for line in problems[:20]:
        print("  " + line)


if __name__ == "__main__":
    main()
