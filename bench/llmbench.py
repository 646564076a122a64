#!/usr/bin/env python3
"""llmbench: a serving benchmark for any OpenAI-compatible server (llmserve, mistral.rs, llama.cpp, vLLM).

Definitions follow vLLM's benchmark_serving (benchmarks/serve.py in vLLM):
  TTFT  send -> first SSE chunk with non-empty text (role-only chunks do not count)
  ITL   gaps between successive content chunks
  TPOT  per request: (E2E - TTFT) / (output tokens - 1)
  E2E   send -> `data: [DONE]`
  throughput: completed requests and output tokens per second of the level's wall time
  goodput: completed requests per second that meet every SLO (--slo-ttft, --slo-tpot)

Load: closed loop (--concurrency 1,2,4: C clients send back to back) and/or open loop (--rate 0.5,1: Poisson
arrivals, exponential gaps from a fixed seed). Requests stream, with temperature 0, a fixed max_tokens and
usage requested; prompts come from bench/prompts.json (fixed synthetic prompts with their token lengths).

Only the Python standard library is needed; --plot needs matplotlib (pip install -r bench/requirements.txt).

Examples:
  python3 bench/llmbench.py --base-url http://127.0.0.1:8080/v1 --concurrency 1,2,4,8,16,32 --out run.json
  python3 bench/llmbench.py --base-url http://127.0.0.1:8080/v1 --rate 0.5,1,2 --duration 60
  python3 bench/llmbench.py --plot run.png run-llmserve.json run-mistralrs.json   # plots saved runs
"""
import argparse
import http.client
import json
import math
import os
import platform
import random
import statistics
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))


class Server:
    """Where requests go: scheme, host, port and path prefix of the base URL (e.g. http://h:8080/v1)."""

    def __init__(self, base_url, api_key=None, timeout=600):
        url = urllib.parse.urlsplit(base_url.rstrip("/"))
        if url.scheme not in ("http", "https"):
            raise SystemExit(f"--base-url must be http(s)://..., got {base_url}")
        self.scheme, self.host, self.port = url.scheme, url.hostname, url.port
        self.prefix = url.path
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout

    def connect(self):
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=self.timeout)

    def get_json(self, path):
        conn = self.connect()
        try:
            conn.request("GET", self.prefix + path, headers=self.headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()


class Result:
    __slots__ = ("ok", "error", "sent", "first", "end", "chunk_times", "output_tokens", "prompt_tokens")

    def __init__(self, sent):
        self.ok, self.error = False, None
        self.sent, self.first, self.end = sent, None, None
        self.chunk_times = []
        self.output_tokens = 0
        self.prompt_tokens = None

    def ttft(self):
        return self.first - self.sent

    def e2e(self):
        return self.end - self.sent

    def tpot(self):
        return (self.e2e() - self.ttft()) / (self.output_tokens - 1) if self.output_tokens > 1 else None

    def itls(self):
        return [b - a for a, b in zip(self.chunk_times, self.chunk_times[1:])]


def chunk_text(endpoint, chunk):
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    if endpoint == "chat":
        return (choices[0].get("delta") or {}).get("content") or ""
    return choices[0].get("text") or ""


def request_body(args, model, prompt):
    body = {"model": model, "max_tokens": args.max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    if args.ignore_eos:
        body["ignore_eos"] = True  # vLLM and llama.cpp extension; llmserve rejects unknown sampling fields
    if args.endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return body


def send(server, args, model, prompt):
    """One streaming request, timed chunk by chunk."""
    body = json.dumps(request_body(args, model, prompt)).encode()
    path = server.prefix + ("/chat/completions" if args.endpoint == "chat" else "/completions")
    result = Result(time.perf_counter())
    conn = server.connect()
    try:
        conn.request("POST", path, body=body, headers=server.headers)
        response = conn.getresponse()
        if response.status != 200:
            result.error = f"HTTP {response.status}: {response.read()[:200].decode(errors='replace')}"
            return result
        chunks_with_text = 0
        while True:
            line = response.readline()
            if not line:
                result.error = "stream ended without [DONE]"
                return result
            line = line.strip()
            if not line.startswith(b"data:"):
                continue  # blank separators and `: ping` comments
            data = line[5:].strip()
            now = time.perf_counter()
            if data == b"[DONE]":
                result.end = now
                break
            chunk = json.loads(data)
            if "error" in chunk:
                result.error = f"error event: {chunk['error'].get('message')}"
                return result
            if chunk_text(args.endpoint, chunk):
                chunks_with_text += 1
                result.chunk_times.append(now)
                if result.first is None:
                    result.first = now
            usage = chunk.get("usage")
            if usage:
                result.output_tokens = usage.get("completion_tokens") or 0
                result.prompt_tokens = usage.get("prompt_tokens")
        if result.output_tokens == 0:
            result.output_tokens = chunks_with_text  # servers that send no usage: one token per chunk
        if result.first is None:
            result.error = "no content chunk"
            return result
        result.ok = True
        return result
    except Exception as error:  # a failed request is counted, never fatal
        result.error = f"{type(error).__name__}: {error}"
        return result
    finally:
        conn.close()


def percentiles(values):
    if not values:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    ordered = sorted(values)

    def pct(p):
        # Linear interpolation between closest ranks (numpy's default).
        k = (len(ordered) - 1) * p
        lo, hi = math.floor(k), math.ceil(k)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)

    return {"mean": statistics.fmean(ordered), "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99)}


def summarize(results, wall, args, load):
    done = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    tpots = [t for t in (r.tpot() for r in done) if t is not None]

    def good(r):
        tpot = r.tpot()
        return r.ttft() <= args.slo_ttft and (tpot is None or tpot <= args.slo_tpot)

    out_tokens = sum(r.output_tokens for r in done)
    return {
        "load": load,
        "requests": len(results),
        "completed": len(done),
        "failed": len(failed),
        "errors": sorted({r.error for r in failed})[:5],
        "duration_s": wall,
        "request_throughput": len(done) / wall,
        "output_token_throughput": out_tokens / wall,
        "goodput": sum(1 for r in done if good(r)) / wall,
        "output_tokens": out_tokens,
        "mean_prompt_tokens": statistics.fmean([r.prompt_tokens for r in done if r.prompt_tokens]) if any(r.prompt_tokens for r in done) else None,
        "ttft_s": percentiles([r.ttft() for r in done]),
        "tpot_s": percentiles(tpots),
        "itl_s": percentiles([g for r in done for g in r.itls()]),
        "e2e_s": percentiles([r.e2e() for r in done]),
    }


def closed_loop(server, args, model, prompts, concurrency, rng):
    """C clients, each sending its next request when the last one ends, until the level's budget is spent."""
    results, lock = [], threading.Lock()
    budget = {"left": args.requests if args.requests else None}
    deadline = time.perf_counter() + args.duration if not args.requests else None
    order = list(prompts)
    rng.shuffle(order)
    counter = [0]

    def client():
        while True:
            with lock:
                if budget["left"] is not None:
                    if budget["left"] <= 0:
                        return
                    budget["left"] -= 1
                elif time.perf_counter() >= deadline:
                    return
                prompt = order[counter[0] % len(order)]
                counter[0] += 1
            result = send(server, args, model, prompt)
            with lock:
                results.append(result)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - start


def open_loop(server, args, model, prompts, rate, rng):
    """Poisson arrivals at `rate` requests/s (exponential gaps), for --requests or --duration."""
    count = args.requests or max(1, round(rate * args.duration))
    gaps = [rng.expovariate(rate) for _ in range(count)]
    order = [prompts[i % len(prompts)] for i in range(count)]
    rng.shuffle(order)
    results, lock = [], threading.Lock()

    def fire(prompt):
        result = send(server, args, model, prompt)
        with lock:
            results.append(result)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.max_open_requests) as pool:
        at = start
        for gap, prompt in zip(gaps, order):
            at += gap
            time.sleep(max(0.0, at - time.perf_counter()))
            pool.submit(fire, prompt)
    return results, time.perf_counter() - start


def fmt(v, scale=1000.0, digits=1):
    return "-" if v is None else f"{v * scale:.{digits}f}"


def print_table(label, levels):
    print(f"\n{label}")
    head = ("load", "ok", "fail", "req/s", "out tok/s", "goodput", "TTFT p50", "p90", "p99",
            "TPOT p50", "p99", "ITL p50", "p99", "E2E p50", "p99")
    print(("{:>8} " * len(head)).format(*head) + "   (latencies in ms)")
    for lv in levels:
        row = (lv["load"], lv["completed"], lv["failed"], f"{lv['request_throughput']:.2f}",
               f"{lv['output_token_throughput']:.1f}", f"{lv['goodput']:.2f}",
               fmt(lv["ttft_s"]["p50"]), fmt(lv["ttft_s"]["p90"]), fmt(lv["ttft_s"]["p99"]),
               fmt(lv["tpot_s"]["p50"]), fmt(lv["tpot_s"]["p99"]),
               fmt(lv["itl_s"]["p50"]), fmt(lv["itl_s"]["p99"]),
               fmt(lv["e2e_s"]["p50"], 1.0, 2), fmt(lv["e2e_s"]["p99"], 1.0, 2))
        print(("{:>8} " * len(row)).format(*row))
        for error in lv["errors"]:
            print(f"         error: {error}")


def plot(path, runs):
    """Throughput and latency against concurrency, one line per run (closed-loop levels only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for run in runs:
        levels = [lv for lv in run["levels"] if str(lv["load"]).startswith("c=")]
        if not levels:
            continue
        xs = [int(lv["load"][2:]) for lv in levels]
        label = run["label"]
        axes[0].plot(xs, [lv["output_token_throughput"] for lv in levels], marker="o", label=label)
        axes[1].plot(xs, [lv["ttft_s"]["p50"] for lv in levels], marker="o", label=f"{label} p50")
        axes[1].plot(xs, [lv["ttft_s"]["p99"] for lv in levels], marker="x", linestyle="--", label=f"{label} p99")
        axes[2].plot(xs, [lv["tpot_s"]["p50"] and lv["tpot_s"]["p50"] * 1000 for lv in levels], marker="o", label=f"{label} p50")
    titles = ("output tokens/s", "TTFT (s)", "TPOT p50 (ms)")
    for ax, title in zip(axes, titles):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrency")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot written: {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1"))
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"))
    parser.add_argument("--model", help="default: the first id of GET /models")
    parser.add_argument("--endpoint", choices=("chat", "completions"), default="chat")
    parser.add_argument("--prompts", default=os.path.join(HERE, "prompts.json"))
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--ignore-eos", action="store_true", help="send vLLM/llama.cpp's ignore_eos")
    parser.add_argument("--concurrency", default="", help="closed-loop levels, e.g. 1,2,4,8,16,32")
    parser.add_argument("--rate", default="", help="open-loop Poisson rates in requests/s, e.g. 0.5,1,2")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per level (closed loop)")
    parser.add_argument("--requests", type=int, default=0, help="requests per level instead of --duration")
    parser.add_argument("--warmup", type=int, default=2, help="requests sent first and discarded")
    parser.add_argument("--max-open-requests", type=int, default=256)
    parser.add_argument("--slo-ttft", type=float, default=1.0, help="goodput SLO, seconds")
    parser.add_argument("--slo-tpot", type=float, default=0.1, help="goodput SLO, seconds per token")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", help="name of this run in tables and plots (default: the model id)")
    parser.add_argument("--out", help="write the run as JSON here")
    parser.add_argument("--plot", help="write a PNG plot here (of this run, or of the saved runs given)")
    parser.add_argument("runs", nargs="*", help="saved JSON runs to plot (with --plot, no benchmark)")
    args = parser.parse_args()

    if args.runs:
        if not args.plot:
            parser.error("saved runs are only read to --plot them")
        runs = [json.load(open(p)) for p in args.runs]
        plot(args.plot, runs)
        return 0
    if not args.concurrency and not args.rate:
        args.concurrency = "1,2,4,8,16,32"

    server = Server(args.base_url, args.api_key)
    model = args.model
    if not model:
        status, models = server.get_json("/models")
        if status != 200 or not models.get("data"):
            raise SystemExit(f"GET /models failed ({status}): {models}")
        model = models["data"][0]["id"]
    prompt_set = json.load(open(args.prompts))
    prompts = [p["text"] for p in prompt_set["prompts"]]
    rng = random.Random(args.seed)

    for i in range(args.warmup):
        warm = send(server, args, model, prompts[i % len(prompts)])
        if not warm.ok:
            raise SystemExit(f"warm-up request failed: {warm.error}")

    levels = []
    for c in [int(x) for x in args.concurrency.split(",") if x]:
        results, wall = closed_loop(server, args, model, prompts, c, rng)
        levels.append(summarize(results, wall, args, f"c={c}"))
        print_table(f"{args.label or model}: closed loop", levels[-1:])
    for rate in [float(x) for x in args.rate.split(",") if x]:
        results, wall = open_loop(server, args, model, prompts, rate, rng)
        levels.append(summarize(results, wall, args, f"r={rate:g}"))
        print_table(f"{args.label or model}: open loop (Poisson)", levels[-1:])

    run = {
        "label": args.label or model,
        "model": model,
        "base_url": args.base_url,
        "endpoint": args.endpoint,
        "max_tokens": args.max_tokens,
        "prompt_set": {"file": os.path.basename(args.prompts), "prompts": len(prompts),
                       "token_lengths": [p.get("tokens") for p in prompt_set["prompts"]]},
        "slo": {"ttft_s": args.slo_ttft, "tpot_s": args.slo_tpot},
        "seed": args.seed,
        "client": {"python": platform.python_version(), "machine": platform.machine(),
                   "cpus": os.cpu_count()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "levels": levels,
    }
    print_table(f"{run['label']}: all levels", levels)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(run, f, indent=2)
        print(f"results written: {args.out}")
    if args.plot:
        plot(args.plot, [run])
    return 1 if any(lv["completed"] == 0 for lv in levels) else 0


if __name__ == "__main__":
    sys.exit(main())
