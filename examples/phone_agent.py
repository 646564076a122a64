"""One step of the Open-AutoGLM phone agent against llmserve: the request its model client sends.

The agent (zai-org/Open-AutoGLM, phone_agent/model/client.py) streams a chat completion with the
conversation so far, the newest screenshot as a PNG data URL before the step's text (earlier screenshots are
removed from the history), and reads `<think>…</think><answer>…</answer>` from the stream.

Serve AutoGLM-Phone-9B first (docs/autoglm.md), e.g.:
    llmserve --model zai-org/AutoGLM-Phone-9B --multimodal --served-model-name autoglm-phone-9b \
        --isq q8_0 --max-image-pixels 5000000 --max-images 10
Run:
    pip install openai
    python examples/phone_agent.py screenshot.png "Open the chrome browser."
Set LLMSERVE_BASE_URL to reach another server (default http://127.0.0.1:8080/v1) and LLMSERVE_API_KEY when
the server has keys.
"""
import base64
import os
import sys
import time

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("LLMSERVE_BASE_URL", "http://127.0.0.1:8080/v1"),
    api_key=os.environ.get("LLMSERVE_API_KEY", "unused"),
)
screenshot, task = sys.argv[1], " ".join(sys.argv[2:]) or "Open the chrome browser."
with open(screenshot, "rb") as f:
    image = base64.b64encode(f.read()).decode()

messages = [
    {"role": "system", "content": "You are a professional Android operation agent assistant ..."},
    {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
            {"type": "text", "text": f"{task}\n\n** Screen Info **\n\n{{\"current_app\": \"System Home\"}}"},
        ],
    },
]
start = time.monotonic()
first = None
answer = ""
stream = client.chat.completions.create(
    model="autoglm-phone-9b",
    messages=messages,
    max_tokens=3000,
    temperature=0.0,
    top_p=0.85,
    frequency_penalty=0.2,
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        first = first or time.monotonic()
        answer += chunk.choices[0].delta.content
        print(chunk.choices[0].delta.content, end="", flush=True)
    if chunk.usage:
        print(f"\n[{chunk.usage.prompt_tokens} prompt tokens, {chunk.usage.completion_tokens} completion tokens, "
              f"first token after {(first or time.monotonic()) - start:.2f} s, {time.monotonic() - start:.2f} s in all]")
# The agent's next step: drop this screenshot from the history, keep the answer.
messages[-1]["content"] = [part for part in messages[-1]["content"] if part["type"] == "text"]
messages.append({"role": "assistant", "content": answer})
