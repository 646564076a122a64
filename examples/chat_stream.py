"""Stream a chat answer from llmserve with the official openai SDK.

Run (with the server started by `scripts/serve.sh` on the default port):
    pip install openai
    python examples/chat_stream.py "Why is the sky blue?"
Set LLMSERVE_BASE_URL to reach another server (default http://127.0.0.1:8080/v1).
"""
import os
import sys

from openai import OpenAI

client = OpenAI(base_url=os.environ.get("LLMSERVE_BASE_URL", "http://127.0.0.1:8080/v1"), api_key="unused")
question = " ".join(sys.argv[1:]) or "Write a haiku about the sea."
model = client.models.list().data[0].id

stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": question}],
    max_tokens=200,
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
    if chunk.usage:
        print(f"\n[{chunk.usage.prompt_tokens} prompt + {chunk.usage.completion_tokens} completion tokens]")
