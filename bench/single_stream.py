"""Single-stream speed of an OpenAI-compatible server: decode tokens/s and prefill tokens/s.

Run: python bench/single_stream.py [BASE_URL] [MODEL]   (default http://127.0.0.1:8080/v1, the first listed model)
Needs the `openai` package. Decode: a 128-token greedy completion, rate between the first and last token (median of 5 runs).
Prefill: prompt tokens / time to first token of a completion with max_tokens=1, at three prompt lengths
(median of 3 runs, 1 for the longest). Each prompt starts with a unique marker so that no run is served
from the engine's prefix cache.
"""
import statistics
import sys
import time

from openai import OpenAI

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/v1"
client = OpenAI(base_url=base, api_key="unused")
model = sys.argv[2] if len(sys.argv) > 2 else client.models.list().data[0].id


def decode_rate(max_tokens=128):
    times = []
    stream = client.completions.create(model=model, prompt="1, 2, 3, 4,", max_tokens=max_tokens, temperature=0,
                                       stream=True, stream_options={"include_usage": True})
    tokens = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            times.append(time.perf_counter())
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return (tokens - 1) / (times[-1] - times[0])


def prefill_rate(items):
    marker = f"Run {time.time_ns()}."
    prompt = marker + " " + " ".join(f"item {i} is a {['red', 'blue', 'green'][i % 3]} box;" for i in range(items))
    start = time.perf_counter()
    stream = client.completions.create(model=model, prompt=prompt, max_tokens=1, temperature=0, stream=True,
                                       stream_options={"include_usage": True})
    first = None
    prompt_tokens = 0
    for chunk in stream:
        if first is None and chunk.choices:
            first = time.perf_counter()
        if chunk.usage:
            prompt_tokens = chunk.usage.prompt_tokens
    return prompt_tokens, prompt_tokens / (first - start)


decode_rate(16)
decodes = [decode_rate() for _ in range(5)]
print(f"model {model}")
print(f"decode  : {statistics.median(decodes):6.1f} tok/s  (runs: {', '.join(f'{d:.1f}' for d in decodes)})")
for items, runs in [(10, 3), (40, 3), (160, 1)]:
    results = [prefill_rate(items) for _ in range(runs)]
    rates = [r for _, r in results]
    print(f"prefill : {statistics.median(rates):6.1f} tok/s at {results[0][0]} prompt tokens "
          f"(runs: {', '.join(f'{r:.0f}' for r in rates)})")
