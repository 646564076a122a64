"""Closed-loop concurrency sweep: output tokens/s and latency of an OpenAI-compatible server at 1, 4, 16 streams.

Run: python bench/concurrency.py [BASE_URL] [LEVELS]   (default http://127.0.0.1:8080/v1, levels 1,4,16)
Needs the `openai` package. Each of C workers sends streaming chat requests back to back (64 output tokens,
temperature 0.8, prompts varied so that the engine's prefix cache does not serve them) for 40 s after a short
warm-up; a request counts when it started inside the window. Reports output tokens/s, requests/s, TTFT and
time per output token (TPOT) medians.
"""
import statistics
import sys
import threading
import time

from openai import OpenAI

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/v1"
levels = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "1,4,16").split(",")]
client = OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=600)
model = client.models.list().data[0].id
WINDOW_S = 40
TOPICS = ["the sea", "a city at night", "mountains", "a library", "trains", "the moon", "a garden", "winter"]


def one_request(seq):
    start = time.perf_counter()
    first = None
    tokens = 0
    stream = client.chat.completions.create(
        model=model, max_tokens=64, temperature=0.8, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": f"Request {seq}: write a few sentences about {TOPICS[seq % len(TOPICS)]}."}],
    )
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    end = time.perf_counter()
    return start, first or end, end, tokens


def sweep(concurrency):
    results, lock, counter = [], threading.Lock(), [0]
    deadline = time.perf_counter() + WINDOW_S

    def worker():
        while time.perf_counter() < deadline:
            with lock:
                counter[0] += 1
                seq = counter[0]
            result = one_request(seq)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    tokens = sum(r[3] for r in results)
    ttft = statistics.median(r[1] - r[0] for r in results)
    tpot = statistics.median((r[2] - r[1]) / (r[3] - 1) for r in results if r[3] > 1)
    return len(results), tokens / elapsed, len(results) / elapsed, ttft, tpot


one_request(0)
print(f"model {model}; {WINDOW_S} s per level")
print("| concurrency | requests | output tok/s | requests/s | TTFT p50 (s) | TPOT p50 (ms) |")
print("|---|---|---|---|---|---|")
for c in levels:
    n, tok_s, req_s, ttft, tpot = sweep(c)
    print(f"| {c} | {n} | {tok_s:.1f} | {req_s:.2f} | {ttft:.2f} | {tpot * 1000:.0f} |", flush=True)
