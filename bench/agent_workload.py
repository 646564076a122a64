#!/usr/bin/env python3
"""An agent's traffic: multi-turn chats that share a long system prompt and grow their history each turn.

Open-AutoGLM (the phone agent llmserve exists for) resends a system prompt of several KB and its whole
history at every step. Here each of --clients clients runs a --turns-turn conversation: the same ~4 KB system
prompt (--system-bytes), then per turn a new user message of its own (a screen description and the step's
goal) and the model's greedy answer (--max-tokens) appended to the history. Turn 1 of every client can only
share the system prompt; turns 2+ share the client's own previous turn as well.

Each server named in --servers is started on the same model, the clients run concurrently, and the report
gives TTFT (send to first content chunk, streamed) for turn 1 and for turns 2+, the wall time, and whether
every llmserve answer equals the first llmserve server's answer for the same turn (greedy decoding: a prefix
cache must not change an answer).

  python3 bench/agent_workload.py                                  # llmserve without and with the prefix cache, llama.cpp
  python3 bench/agent_workload.py --servers llmserve-cache --clients 8 --turns 6 --model FILE
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from llmbench import Server  # noqa: E402
from server_process import free_port, wait_ready  # noqa: E402

CACHE = os.environ.get("LLMSERVE_CACHE_DIR", os.path.expanduser("~/.cache/llmserve"))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(CACHE, "target"))

APPS = ["Settings", "Messages", "Maps", "Camera", "Clock", "Calendar", "Notes", "Music", "Mail", "Photos"]


def system_prompt(size):
    """Deterministic agent instructions of about `size` bytes: rules, then a numbered action reference."""
    lines = [
        "You are a phone-operating agent. Each turn you receive the current screen and the task.",
        "Think briefly, then answer with exactly one action in the form do(action=..., element=[x, y]).",
        "Coordinates are relative, from 0 to 1000 on both axes. Never invent elements that are not shown.",
    ]
    i = 0
    while sum(len(line) + 1 for line in lines) < size:
        app = APPS[i % len(APPS)]
        lines.append(f"Rule {i + 1}: when the {app} app shows a dialog, read its title first; tap the "
                     f"button that continues the task, or Back when the dialog is unrelated to it.")
        i += 1
    return "\n".join(lines)


def user_turn(client, turn):
    app = APPS[(client + turn) % len(APPS)]
    return (f"Task {client}: open {app} and turn on the option number {turn + client}. "
            f"Step {turn + 1}. Screen: the {app} app, a list of {5 + turn} rows, the first titled "
            f"'{app} option {turn}', a search bar at [500, 80].")


def run_client(server, model, system, client, turns, max_tokens, out):
    messages = [{"role": "system", "content": system}]
    for turn in range(turns):
        messages.append({"role": "user", "content": user_turn(client, turn)})
        body = json.dumps({"model": model, "messages": messages, "max_tokens": max_tokens,
                           "temperature": 0, "stream": True,
                           "stream_options": {"include_usage": True}}).encode()
        conn = server.connect()
        sent, first, text, prompt_tokens, error = time.perf_counter(), None, [], None, None
        try:
            conn.request("POST", server.prefix + "/chat/completions", body=body, headers=server.headers)
            response = conn.getresponse()
            if response.status != 200:
                error = f"HTTP {response.status}: {response.read()[:200]!r}"
            else:
                for line in response:
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        break
                    chunk = json.loads(data)
                    choices = chunk.get("choices") or []
                    delta = (choices[0].get("delta") or {}).get("content") if choices else None
                    if delta:
                        text.append(delta)
                        if first is None:
                            first = time.perf_counter()
                    if chunk.get("usage"):
                        prompt_tokens = chunk["usage"].get("prompt_tokens")
        except Exception as e:  # counted, never fatal
            error = f"{type(e).__name__}: {e}"
        finally:
            conn.close()
        answer = "".join(text)
        out.append({"client": client, "turn": turn, "ttft": (first - sent) if first else None,
                    "answer": answer, "prompt_tokens": prompt_tokens, "error": error})
        messages.append({"role": "assistant", "content": answer})


def run_workload(base_url, model, args):
    server = Server(base_url)
    system = system_prompt(args.system_bytes)
    results, threads = [], []
    started = time.perf_counter()
    for client in range(args.clients):
        thread = threading.Thread(target=run_client, args=(server, model, system, client, args.turns,
                                                           args.max_tokens, results))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(args.deadline)
    wall = time.perf_counter() - started
    finished = not any(thread.is_alive() for thread in threads)
    return {"wall_s": wall, "finished": finished, "results": sorted(results, key=lambda r: (r["client"], r["turn"]))}


def server_specs(args):
    llmserve = args.llmserve or os.path.join(TARGET, "release", "llmserve")
    llama = os.path.join(CACHE, "peers", "llama.cpp", "build", "bin", "llama-server")

    def llmserve_argv(cache_n):
        return lambda port: [llmserve, "--model", args.model, "--port", str(port), "--max-num-seqs",
                             str(args.clients), "--prefix-cache-n", str(cache_n)]

    return {
        "llmserve-nocache": (llmserve, llmserve_argv(0)),
        "llmserve-cache": (llmserve, llmserve_argv(args.prefix_cache_n)),
        # llama.cpp reuses each slot's cache for a prompt's common prefix (`cache_prompt`, on by default).
        "llama.cpp": (llama, lambda port: [llama, "-m", args.model, "--port", str(port), "-np",
                                           str(args.clients), "-c", str(4096 * args.clients), "-t",
                                           str(os.cpu_count())]),
    }


def median_ms(values):
    values = [v for v in values if v is not None]
    return f"{statistics.median(values) * 1000:.0f}" if values else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="llmserve-nocache,llmserve-cache,llama.cpp")
    parser.add_argument("--model", default=os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q8_0.gguf"))
    parser.add_argument("--llmserve", help="the llmserve binary (default: the release build)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--system-bytes", type=int, default=4096)
    parser.add_argument("--prefix-cache-n", type=int, default=16, help="llmserve-cache's --prefix-cache-n")
    parser.add_argument("--deadline", type=float, default=900, help="seconds the whole run may take")
    parser.add_argument("--out", help="write every answer and timing as JSON here")
    args = parser.parse_args()

    specs = server_specs(args)
    runs = {}
    for name in args.servers.split(","):
        binary, argv = specs[name]
        if not os.path.exists(binary):
            print(f"{name}: {binary} is missing, skipped", file=sys.stderr)
            continue
        port = free_port()
        log = open(os.path.join("/tmp", f"agent-workload-{name}.log"), "w")
        proc = subprocess.Popen(argv(port), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(port, proc)
            model = "llama.cpp" if name == "llama.cpp" else None
            if model is None:
                status, listed = Server(f"http://127.0.0.1:{port}/v1").get_json("/models")
                model = listed["data"][0]["id"]
            runs[name] = run_workload(f"http://127.0.0.1:{port}/v1", model, args)
        finally:
            proc.terminate()
            proc.wait()

    print(f"{args.clients} clients x {args.turns} turns, system prompt {args.system_bytes} bytes, "
          f"max_tokens {args.max_tokens}, model {os.path.basename(args.model)}\n")
    print("| server | TTFT p50 turn 1 (ms) | TTFT p50 turns 2+ (ms) | prompt tokens, last turn | wall (s) | "
          "finished | errors | answers equal the first llmserve's |")
    print("|---|---|---|---|---|---|---|---|")
    reference = None
    for name, run in runs.items():
        results = run["results"]
        first_turn = [r["ttft"] for r in results if r["turn"] == 0]
        later = [r["ttft"] for r in results if r["turn"] > 0]
        last = [r["prompt_tokens"] for r in results if r["turn"] == args.turns - 1 and r["prompt_tokens"]]
        errors = sum(1 for r in results if r["error"])
        answers = {(r["client"], r["turn"]): r["answer"] for r in results}
        if not name.startswith("llmserve"):
            same = "n/a (another engine's numerics)"
        elif reference is None:
            reference, same = answers, "(reference)"
        else:
            differing = sum(1 for key, answer in answers.items() if reference.get(key) != answer)
            same = "yes" if differing == 0 else f"no: {differing} of {len(answers)} differ"
        print(f"| {name} | {median_ms(first_turn)} | {median_ms(later)} | "
              f"{max(last) if last else '-'} | {run['wall_s']:.1f} | {run['finished']} | {errors} | {same} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
