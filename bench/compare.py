#!/usr/bin/env python3
"""Runs llmserve and its peers on the same model file and writes the comparison into docs/benchmarks.md.

Each server is started on the same GGUF file (SHA-256 recorded) with the same number of sequence slots,
warmed up, swept over closed-loop concurrency levels with bench/llmbench.py, and stopped; repetitions are
interleaved (A, B, C, A, B, C) so that drift on a shared machine hits every server alike. Peak RSS and CPU
seconds come from /proc; cold start is process start to the first non-empty GET /v1/models.

Peers are built once, outside CI (bench/build-peers.sh says how); a peer whose binary is missing is skipped.

  python3 bench/compare.py                       # full run: levels 1..32, 2 repetitions, 30 s per level
  python3 bench/compare.py --quick               # 1,4,16, 1 repetition, 15 s per level
  python3 bench/compare.py --servers llmserve --baseline OLD_BINARY --no-doc   # A/B of two llmserve builds
"""
import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from server_process import free_port, wait_ready

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.environ.get("LLMSERVE_CACHE_DIR", os.path.expanduser("~/.cache/llmserve"))
PEERS = os.path.join(CACHE, "peers")
BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def servers(model, slots, threads, llmserve=None, baseline=None, chat_template=None):
    """name -> (binary, argv builder, version command). `chat_template`: a Jinja file every server renders
    chat with (for a base model whose GGUF has none; mistral.rs's server takes no file and is left out)."""
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(CACHE, "target"))
    model_dir, model_file = os.path.dirname(model), os.path.basename(model)
    template_llmserve = ["--chat-template", chat_template] if chat_template else []
    template_llama_cpp = ["--jinja", "--chat-template-file", chat_template] if chat_template else []
    llmserve_argv = lambda binary, port: [binary, "--model", model, "--port", str(port),  # noqa: E731
                                          "--max-num-seqs", str(slots), "--max-queue", "1024",
                                          *template_llmserve]
    specs = {
        "llmserve": (
            llmserve or os.path.join(target, "release", "llmserve"),
            llmserve_argv,
            lambda binary: [binary, "--version"],
        ),
        "mistralrs": (
            os.path.join(PEERS, "bin", "mistralrs"),
            lambda binary, port: [binary, "serve", "-p", str(port), "--max-seqs", str(slots),
                                  "-m", model_dir, "-f", model_file, "--format", "gguf",
                                  "--token-source", "none"],
            lambda binary: [binary, "--version"],
        ),
        "llama.cpp": (
            os.path.join(PEERS, "llama.cpp", "build", "bin", "llama-server"),
            # -c is the total context, shared by the -np slots: 16 x 1024 tokens.
            lambda binary, port: [binary, "-m", model, "--alias", "llama.cpp", "--port", str(port),
                                  "-c", str(1024 * slots), "-np", str(slots), "-t", str(threads),
                                  *template_llama_cpp],
            lambda binary: [binary, "--version"],
        ),
    }
    if chat_template:
        del specs["mistralrs"]
    if baseline:
        # Another llmserve build (e.g. before an engine patch), run the same way: an A/B in one run.
        specs["llmserve-baseline"] = (baseline, llmserve_argv, lambda binary: [binary, "--version"])
    return specs


def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def run_server(name, spec, args, log_dir, rep):
    binary, argv, _ = spec
    port = free_port()
    log = open(os.path.join(log_dir, f"{name}-{rep}.log"), "w")
    proc = subprocess.Popen(argv(binary, port), stdout=log, stderr=subprocess.STDOUT)
    try:
        cold_start = wait_ready(port, proc)
        out = os.path.join(log_dir, f"{name}-{rep}.json")
        bench = [sys.executable, os.path.join(HERE, "llmbench.py"), "--base-url", f"http://127.0.0.1:{port}/v1",
                 "--concurrency", args.levels, "--duration", str(args.duration), "--max-tokens",
                 str(args.max_tokens), "--warmup", "4", "--label", name, "--out", out]
        subprocess.run(bench, check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            run = json.load(f)
        run["server"] = {"cold_start_s": cold_start, "peak_rss_bytes": proc_status(proc.pid, "VmHWM"),
                         "end_rss_bytes": proc_status(proc.pid, "VmRSS"), "cpu_s": cpu_seconds(proc.pid)}
        return run
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def median_level(runs, load, key, sub=None):
    values = []
    for run in runs:
        for lv in run["levels"]:
            if lv["load"] == load:
                v = lv[key][sub] if sub else lv[key]
                if v is not None:
                    values.append(v)
    return statistics.median(values) if values else None


def version_of(spec):
    binary, _, version = spec
    try:
        out = subprocess.run(version(binary), capture_output=True, text=True, timeout=30)
        text = (out.stdout + out.stderr).strip().splitlines()
        return " ".join(text[-1:] if "llama" in binary else text[:1])
    except OSError:
        return "?"


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def report(all_runs, args, model_sha, versions, load_before):
    names = list(all_runs)
    levels = [f"c={c}" for c in args.levels.split(",")]
    lines = [BEGIN, "", f"Generated by `python3 bench/compare.py {' '.join(sys.argv[1:])}` on "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             f"- Machine: {machine()}; load average before the run: {load_before}.",
             f"- Model: `{os.path.basename(args.model)}`, SHA-256 `{model_sha}`.",
             f"- Every server: {args.slots} sequence slots, streaming chat requests, `temperature: 0`, "
             f"`max_tokens: {args.max_tokens}`, prompts from `bench/prompts.json` (37-106 tokens after "
             f"templating), closed loop, {args.duration:g} s per level after 4 warm-up requests, "
             f"{args.repeats} interleaved repetition(s); medians over repetitions.",
             "- Server and client share the machine's cores (no pinning); the client's CPU use is small "
             "next to generation.",
             "- Versions: " + "; ".join(f"{n}: {versions[n]}" for n in names) + ".", "",
             "Output tokens/s:", "",
             "| concurrency | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for load in levels:
        cells = [median_level(all_runs[n], load, "output_token_throughput") for n in names]
        lines.append(f"| {load[2:]} | " + " | ".join("-" if c is None else f"{c:.1f}" for c in cells) + " |")
    lines += ["", "TTFT p50 / TPOT p50 (ms):", "", "| concurrency | " + " | ".join(names) + " |",
              "|---" * (len(names) + 1) + "|"]
    for load in levels:
        cells = []
        for n in names:
            ttft = median_level(all_runs[n], load, "ttft_s", "p50")
            tpot = median_level(all_runs[n], load, "tpot_s", "p50")
            cells.append("-" if ttft is None else f"{ttft * 1000:.0f} / {tpot * 1000 if tpot else 0:.0f}")
        lines.append(f"| {load[2:]} | " + " | ".join(cells) + " |")
    lines += ["", "| server | cold start (s) | peak RSS (MB) | RSS at end (MB) | CPU s | failed requests |",
              "|---|---|---|---|---|---|"]
    for n in names:
        runs = all_runs[n]
        srv = [r["server"] for r in runs]
        failed = sum(lv["failed"] for r in runs for lv in r["levels"])
        lines.append(f"| {n} | {statistics.median(s['cold_start_s'] for s in srv):.1f} | "
                     f"{max(s['peak_rss_bytes'] or 0 for s in srv) / 1e6:.0f} | "
                     f"{statistics.median(s['end_rss_bytes'] or 0 for s in srv) / 1e6:.0f} | "
                     f"{statistics.median(s['cpu_s'] or 0 for s in srv):.0f} | {failed} |")
    if "llmserve" in all_runs and "mistralrs" in all_runs:
        ours = median_level(all_runs["llmserve"], "c=16", "output_token_throughput")
        theirs = median_level(all_runs["mistralrs"], "c=16", "output_token_throughput")
        if ours and theirs:
            lines += ["", f"llmserve / mistralrs serve at concurrency 16: **{ours / theirs:.2f}x** (target 1.2x)."]
    if "llmserve" in all_runs and "llama.cpp" in all_runs:
        ours = median_level(all_runs["llmserve"], "c=16", "output_token_throughput")
        theirs = median_level(all_runs["llama.cpp"], "c=16", "output_token_throughput")
        if ours and theirs:
            lines += [f"llmserve / llama.cpp at concurrency 16: **{ours / theirs:.2f}x**."]
    if "llmserve" in all_runs and "llmserve-baseline" in all_runs:
        ratios = []
        for load in levels:
            ours = median_level(all_runs["llmserve"], load, "output_token_throughput")
            base = median_level(all_runs["llmserve-baseline"], load, "output_token_throughput")
            if ours and base:
                ratios.append(f"{load}: {ours / base:.2f}x")
        lines += ["", "llmserve / llmserve-baseline, output tokens/s: " + ", ".join(ratios) + "."]
    if "llmserve" in all_runs:
        c1 = median_level(all_runs["llmserve"], "c=1", "output_token_throughput")
        c16 = median_level(all_runs["llmserve"], "c=16", "output_token_throughput")
        if c1 and c16:
            lines += [f"llmserve concurrency 16 / concurrency 1: **{c16 / c1:.2f}x** (target 3x)."]
    lines += ["", f"![throughput and latency against concurrency](bench/{os.path.basename(args.plot)})", "", END]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q8_0.gguf"))
    parser.add_argument("--servers", default="llmserve,mistralrs,llama.cpp")
    parser.add_argument("--llmserve", help="the llmserve binary (default: the release build)")
    parser.add_argument("--baseline", help="a second llmserve binary, run as llmserve-baseline")
    parser.add_argument("--no-doc", action="store_true", help="print the tables, leave docs/ alone")
    parser.add_argument("--levels", default="1,2,4,8,16,32")
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true", help="levels 1,4,16, one repetition, 15 s")
    parser.add_argument("--chat-template", help="a Jinja chat template file given to every server (a base "
                        "model's GGUF has none)")
    parser.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "docs", "bench", "comparison.png"))
    parser.add_argument("--doc", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    args = parser.parse_args()
    if args.quick:
        args.levels, args.repeats, args.duration = "1,4,16", 1, 15

    specs = servers(args.model, args.slots, args.threads, args.llmserve, args.baseline, args.chat_template)
    names = args.servers.split(",") + (["llmserve-baseline"] if args.baseline else [])
    chosen = {}
    for name in names:
        if name not in specs:
            raise SystemExit(f"unknown server {name}; known: {', '.join(specs)}")
        if os.access(specs[name][0], os.X_OK):
            chosen[name] = specs[name]
        else:
            print(f"skipping {name}: {specs[name][0]} not built (bench/build-peers.sh)")
    if not chosen:
        raise SystemExit("no server to run")
    os.makedirs(args.results, exist_ok=True)
    os.makedirs(os.path.dirname(args.plot), exist_ok=True)
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    model_sha = sha256(args.model)
    versions = {name: version_of(spec) for name, spec in chosen.items()}

    all_runs = {name: [] for name in chosen}
    for rep in range(args.repeats):
        for name, spec in chosen.items():
            print(f"repetition {rep + 1}/{args.repeats}: {name}", flush=True)
            all_runs[name].append(run_server(name, spec, args, args.results, rep))
    with open(os.path.join(args.results, "comparison.json"), "w") as f:
        json.dump({"model_sha256": model_sha, "versions": versions, "runs": all_runs}, f, indent=2)

    # The plot shows each server's first repetition; the tables use medians.
    try:
        subprocess.run([sys.executable, os.path.join(HERE, "llmbench.py"), "--plot", args.plot]
                       + [os.path.join(args.results, f"{n}-0.json") for n in chosen], check=True)
    except subprocess.CalledProcessError:
        print("no plot (pip install -r bench/requirements.txt for matplotlib)")
    section = report(all_runs, args, model_sha, versions, load_before)
    print(section)
    if args.no_doc:
        return
    doc = open(args.doc).read() if os.path.exists(args.doc) else ""
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + section.rstrip("\n") + doc[doc.index(END) + len(END):]
    else:
        doc += "\n## llmserve against mistral.rs and llama.cpp (issue 7)\n\n" + section
    with open(args.doc, "w") as f:
        f.write(doc)
    print(f"written: {args.doc}")


if __name__ == "__main__":
    main()
